/**
 * The floor plan, checked: `npm run check:imports` (and a unit test) fail on any import cycle or
 * any arrow that runs upward. Floors from the ground up; a room imports only from its own floor
 * or below. Inside src/models the runtime is below the role contracts, which are below the
 * families, and no family imports another.
 */
const FLOORS = [
  ['core'],
  ['config'],
  ['io', 'models', 'demo'],
  ['telemetry'],
  ['pipeline', 'report'],
  ['workers'],
  ['run'],
  ['cli', 'dashboard'],
];

const above = (i) => FLOORS.slice(i + 1).flat();
const floorRules = FLOORS.flatMap((rooms, i) => (i === FLOORS.length - 1 ? [] : rooms.map((room) => ({
  name: `floor-${room}`,
  comment: `src/${room} is on floor ${i}: it may not import ${above(i).join(', ')}`,
  severity: 'error',
  from: { path: `^src/${room}/` },
  to: { path: `^src/(${above(i).join('|')})/` },
}))));

const MODEL_FAMILIES = ['blip', 'clip'];

module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      comment: 'no import cycle, type-only imports included',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...floorRules,
    {
      name: 'models-runtime-is-family-agnostic',
      severity: 'error',
      from: { path: '^src/models/runtime/' },
      to: { path: `^src/models/(${MODEL_FAMILIES.join('|')})/|^src/models/(roles|families)\\.ts$` },
    },
    {
      name: 'roles-know-no-family',
      severity: 'error',
      from: { path: '^src/models/roles\\.ts$' },
      to: { path: `^src/models/(${MODEL_FAMILIES.join('|')})/|^src/models/families\\.ts$` },
    },
    ...MODEL_FAMILIES.map((f) => ({
      name: `family-${f}-is-alone`,
      comment: `src/models/${f} shares through src/models/runtime, never by importing another family`,
      severity: 'error',
      from: { path: `^src/models/${f}/` },
      to: { path: `^src/models/(${MODEL_FAMILIES.filter((o) => o !== f).join('|')})/|^src/models/families\\.ts$` },
    })),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.mjs', '.js'] },
  },
};
