#!/usr/bin/env node
// The CLI ships as TypeScript and runs through tsx's loader, so `npx capfilt` works on a fresh
// clone after `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
