"""Infrastructure: process ranks and launching, atomic writes, fingerprints, progress lines, Ctrl-C handling, the loopback rendezvous."""
