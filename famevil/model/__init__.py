"""The FAME-ViL model on an open_clip CLIP: task-specific and cross-attention adapters, three modes, four heads."""
