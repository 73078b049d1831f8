"""Long documents cut into line-aligned pieces, so packed batches mix many documents.

A packing stream reads its current document to the end before the next one; a 16 KB source file
would fill one row of 128 byte tokens for over 100 consecutive steps. Cutting documents into
pieces of at most `piece_bytes` (at line ends; a longer line is cut inside) and shuffling the
pieces bounds that. Only a document's last piece is followed by the end-of-document token;
attention and loss still never cross from one piece into another.
"""


def split_ranges(data: bytes, piece_bytes: int) -> list[tuple[int, int]]:
  """`(start, end)` byte ranges covering `data`, each at most `piece_bytes` long (0 = one piece),
  cut after a newline where possible."""
  n = len(data)
  if piece_bytes <= 0 or n <= piece_bytes:
    return [(0, n)] if n else []
  ranges, start = [], 0
  while n - start > piece_bytes:
    cut = data.rfind(b"\n", start, start + piece_bytes) + 1  # Just after a newline ...
    if cut <= start:
      cut = start + piece_bytes  # ... or inside an over-long line.
    ranges.append((start, cut))
    start = cut
  ranges.append((start, n))
  return ranges


def split(data: bytes, piece_bytes: int) -> list[bytes]:
  return [data[s:e] for s, e in split_ranges(data, piece_bytes)]
