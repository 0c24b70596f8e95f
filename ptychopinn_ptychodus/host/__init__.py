"""The Ptychodus adapter: readers and writers, release differences, doctor, the folder bridge."""
