"""The Ptychodus product HDF5 side: its layout (read and write) and the chunked pattern writer."""
