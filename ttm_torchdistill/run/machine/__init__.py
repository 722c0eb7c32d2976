"""Where the run's processes are: the process group, fitting the run to the machine, and the one seed of every rank."""
