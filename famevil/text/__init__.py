"""Text a shop writes and reads: zero-shot label sets and prompt templates (labels), and captions turned
into copy (captions)."""
