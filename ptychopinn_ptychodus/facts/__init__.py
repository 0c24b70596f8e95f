"""What the files mean, without I/O: quantities, geometry, position convention, stacks, errors."""
