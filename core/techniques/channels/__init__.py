"""Channel pruning by real surgery: channel groups (graph), thinning (surgery), NPU-aligned widths (widths)."""
