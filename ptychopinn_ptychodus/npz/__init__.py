"""The PtychoPINN NPZ side: safe archive, checked array reads, streamed patterns, what keys mean."""
