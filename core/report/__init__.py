"""The run's HTML report: the page, the kernel trace it plots, writing it from leaf evaluations."""
