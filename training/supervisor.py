"""A multi-process run's last word: one line naming the lost process, whichever it is.

When a process of a `jax.distributed` run dies, JAX ends the survivors itself: its
coordination client polls the service (which process 0 hosts) and, on an error, logs
"Terminating process because the JAX distributed service detected fatal errors" and aborts
from a C++ thread, with Python's fault handler dumping every thread after it. Nothing in
the process can catch that (the client's callback cannot be a Python function in this
jaxlib), so `supervise` runs the command in a child process instead, passes its output
through, and when the child ends that way, replaces JAX's lines and the dump with one line
of its own naming the lost process. Failures the child sees first (a collective that
errors: `training.process.exit_naming_lost_processes`) it reports itself, and the supervisor passes
that on unchanged, and then says nothing more if JAX ends the child after all.

The child gets its own process group, so a Ctrl-C or a cluster's SIGTERM to the command's
group reaches it once, through the supervisor, which forwards SIGINT, SIGTERM, SIGHUP and
SIGUSR1/2; and the child calls `die_with_supervisor` first (PR_SET_PDEATHSIG), so a
SIGKILL to the command still kills the training process.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence

# Set in the child to the supervisor's pid, so that it trains instead of supervising.
CHILD_ENV = "RECTIFIERS_SUPERVISOR_PID"
# The line JAX's coordination client logs before it aborts the process (xla/pjrt/distributed).
JAX_TERMINATION = "Terminating process because the JAX distributed service detected fatal errors"
# How the child's own line about a lost process begins (training/process.py
# `exit_naming_lost_processes`, after a failed collective).
CHILD_REPORT = "A collective with the other processes failed"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1,
                     signal.SIGUSR2)
_PR_SET_PDEATHSIG = 1


def is_child() -> bool:
  """Whether this process is a supervised child (it must train, not supervise)."""
  return bool(os.environ.get(CHILD_ENV))


def die_with_supervisor() -> None:
  """Has the kernel SIGKILL this child when its supervisor dies (Linux; elsewhere the
  child may outlive a killed supervisor), and exits at once if that already happened.
  Done here rather than before exec in the supervisor, where it would not be safe with
  threads."""
  try:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  except (OSError, AttributeError):
    return
  if str(os.getppid()) != os.environ.get(CHILD_ENV):
    os._exit(1)  # pylint: disable=protected-access


def lost_processes(report: str, process_id: int | None) -> list[int] | None:
  """The processes JAX's termination `report` names as lost: the tasks it lists as
  unhealthy or as having stopped sending heartbeats, or process 0 (the coordination
  service's host) when the service itself cannot be reached; None when it says neither."""
  unhealthy = re.search(r"stopped sending heartbeats\):((?:\s*(?:/job:\S*?task:\d+|\d+)\b,?)+)",
                        report)
  if unhealthy:
    names = unhealthy.group(1)
    tasks = re.findall(r"task:(\d+)", names) or re.findall(r"\d+", names)
    return sorted({int(t) for t in tasks} - {process_id})
  if process_id != 0 and re.search(r"Failed to send RPC to coordination service|leader task",
                                   report):
    return [0]
  return None


def who_stopped(lost: Sequence[int] | None, num_processes: int | None) -> str:
  """The lost processes as the one-line reports name them (here and in train.py)."""
  of = f" of {num_processes}" if num_processes else ""
  return (f"process(es) {list(lost)}{of} stopped answering" if lost else
          "another process (or the coordinator) stopped answering")


def termination_line(report: str, process_id: int | None, num_processes: int | None) -> str:
  """The one line that stands for JAX's termination `report` of this process."""
  who = who_stopped(lost_processes(report, process_id), num_processes)
  me = "this process" if process_id is None else f"process {process_id}"
  status = report.split("absl::Status:", 1)[-1].strip().split("\n")[0][:300]
  return (f"Lost a process of the run: {who}; JAX's coordination service ended {me} "
          f"({status}). Rerun every process to resume from the last checkpoint.")


def supervise(argv: Sequence[str], process_id: int | None, num_processes: int | None) -> int:
  """Runs `python argv...` as a child (with CHILD_ENV set), passing its stdout and stderr
  through, and returns its exit status (128 + N for signal N); when JAX's coordination
  service ended it, prints `termination_line` instead of JAX's lines and returns 1.

  One lost process is one line: when the child already said so itself (CHILD_REPORT: its
  collective failed as JAX's service noticed the loss, and which of the two comes first
  is a race), JAX's termination that follows is dropped without a second line."""
  child = subprocess.Popen([sys.executable, *argv],
                           env={**os.environ, CHILD_ENV: str(os.getpid())},
                           stderr=subprocess.PIPE, process_group=0)
  previous = {sig: signal.signal(sig, lambda signum, _: child.send_signal(signum))
              for sig in FORWARDED_SIGNALS}
  report, reported = None, False
  try:
    for line in child.stderr:
      text = line.decode("utf-8", "replace")
      if report is None and JAX_TERMINATION in text:
        report = text
      if report is None:
        reported = reported or CHILD_REPORT in text
        sys.stderr.buffer.write(line)
        sys.stderr.flush()
      else:  # JAX's status and the fault handler's dump: kept for the one line
        report += text
    status = child.wait()
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  if report is not None:
    if not reported:
      print(termination_line(report, process_id, num_processes), file=sys.stderr, flush=True)
    return 1
  return status if status >= 0 else 128 - status
