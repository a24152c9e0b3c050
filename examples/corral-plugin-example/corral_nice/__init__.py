"""A corral launcher that runs jobs at low CPU and I/O priority."""
