"""Data files of the embedders (the MiniLM tokenizer and its licence); no code."""
