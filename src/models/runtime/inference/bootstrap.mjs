// Entry of the inference worker thread. Worker threads do not inherit the main thread's module
// hooks, so the thread registers tsx itself before loading the TypeScript thread code.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
