"""The TFMOT techniques (prune, cluster, preserving QAT) and which layers each can handle."""
