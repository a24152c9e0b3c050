"""The composition root: experiments, launcher choice, hosts files and the built-in plugins."""
