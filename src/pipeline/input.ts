import type { CapfiltConfig } from '../config/schema.ts';
import * as readers from '../io/readers/index.ts';
import type { InputRow, ReaderOptions } from '../io/readers/types.ts';

/** The run's view of the input: the readers of src/io with the run's `input` options (and `s3`, for s3:// input). */
export function readerOptions(config: CapfiltConfig): ReaderOptions {
  const i = config.input;
  return {
    urlCol: i.urlCol,
    captionCol: i.captionCol,
    saveAdditionalColumns: i.saveAdditionalColumns,
    trustedCol: i.trustedCol,
    maxCaptionBytes: i.maxCaptionBytes,
    maxRecordBytes: i.maxRecordBytes,
    format: i.format,
    s3: config.s3,
  };
}

export function listInputFiles(config: CapfiltConfig): Promise<string[]> {
  return readers.listInputFiles(config.input.path!, config.s3);
}

export function countRows(file: string, config: CapfiltConfig): Promise<number> {
  return readers.countRows(file, readerOptions(config));
}

/** Rows of a file; a whole input marked trusted (input.trusted) makes every row trusted. */
export async function* readRows(file: string, config: CapfiltConfig): AsyncGenerator<InputRow> {
  for await (const row of readers.readRows(file, readerOptions(config))) {
    yield config.input.trusted ? { ...row, trusted: true } : row;
  }
}
