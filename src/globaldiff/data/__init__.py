"""The processed split and what the models read from it: sequences (splits on disk), windows (model inputs)."""
