"""How much memory this machine has and can still give (book/command-line.ipynb).

The command line and the count models check it before large allocations.

Three figures, each None when the system does not say:

- ``physical_memory``: the machine's memory, for what must fit whatever else
  runs (a model's parameters);
- ``available_memory``: what a process can still take now, the kernel's
  MemAvailable, and no more than a container's limit (cgroup v2) leaves;
- ``memory_limit``: what this process may take, the available memory or a
  lower ``ulimit -v`` / ``-d``.
"""
import os
import resource
from pathlib import Path

MEMINFO = Path('/proc/meminfo')
CGROUP = Path('/sys/fs/cgroup')  # a container's memory limit, if any


def physical_memory():
    """Bytes of memory of this machine, or None if the system won't say."""
    try:
        return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None


def available_memory():
    """Bytes of memory a process can still take here, or None if unknown."""
    found = []
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith('MemAvailable:'):
                found.append(int(line.split()[1]) * 1024)  # in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (CGROUP / 'memory.max').read_text().strip()
        if limit != 'max':
            used = int((CGROUP / 'memory.current').read_text())
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def memory_limit():
    """Bytes this process may still take: the available memory, or a lower
    ``ulimit -v`` / ``-d``; None if the system does not say."""
    limits = [available_memory()]
    for name in ('RLIMIT_AS', 'RLIMIT_DATA'):
        soft = resource.getrlimit(getattr(resource, name))[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    limits = [limit for limit in limits if limit is not None]
    return min(limits) if limits else None
