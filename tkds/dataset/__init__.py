"""The dataset builder and loader: WebDataset shards with leak-free splits."""
