"""Safe file I/O: untrusted-input guards, all-or-nothing output, cancellation, block reads."""
