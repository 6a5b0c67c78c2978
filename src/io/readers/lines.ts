/**
 * Line splitting at byte level ("\n", optional "\r" before it), with the byte offset of every
 * line, for jsonl and url lists. Blank (whitespace-only) lines are skipped: they are not rows.
 */
export interface Line {
  bytes: Buffer;
  offset: number;
}

export async function* lines(chunks: AsyncIterable<Buffer>, startOffset = 0): AsyncGenerator<Line> {
  let carry: Buffer[] = [];
  let carryLen = 0;
  let lineStart = startOffset;
  let pos = startOffset;
  for await (const chunk of chunks) {
    let from = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, from)) {
      const piece = chunk.subarray(from, nl);
      const line = carryLen ? Buffer.concat([...carry, piece], carryLen + piece.length) : piece;
      carry = [];
      carryLen = 0;
      if (!isBlank(line)) yield { bytes: stripCr(line), offset: lineStart };
      lineStart = pos + nl + 1;
      from = nl + 1;
    }
    if (from < chunk.length) {
      carry.push(chunk.subarray(from));
      carryLen += chunk.length - from;
    }
    pos += chunk.length;
  }
  if (carryLen) {
    const line = Buffer.concat(carry, carryLen);
    if (!isBlank(line)) yield { bytes: stripCr(line), offset: lineStart };
  }
}

function stripCr(b: Buffer): Buffer {
  return b.length && b[b.length - 1] === 13 ? b.subarray(0, -1) : b;
}

function isBlank(b: Buffer): boolean {
  for (const c of b) if (c !== 32 && c !== 9 && c !== 13) return false;
  return true;
}
