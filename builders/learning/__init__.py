"""What the build learns from the shop's data: the encoder, statistics, query behaviour, the index, the ranker."""
