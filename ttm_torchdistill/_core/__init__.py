"""Private plumbing shared by the package's public modules: the unchecked loss kernels (:mod:`.kernels`,
:mod:`.mlkd`), reading torchdistill's io dicts (:mod:`.io_dict`) and walking a criterion's loss modules
(:mod:`.criterion_walk`). Names here are public to the package, not to its users."""
