"""Whole-process timing, spawn to exit, for the start-up benchmarks (scripts/bench-aws,
scripts/bench-start).

    time-processes.py ROUNDS RUNS1 COMMAND1... [-- RUNS2 COMMAND2...]...

Each round runs the commands interleaved (RUNSk runs of command k spread over the round), after
one warm-up run of each, so that a machine that gets busier or quieter affects every command
alike. Prints one line per round: for each command, the median wall-clock and the median CPU time
of the child (user + system), in milliseconds. Standard output of the commands is discarded;
a command that exits non-zero stops the run.
"""
import os
import statistics
import sys
import time


def main() -> None:
    rounds = int(sys.argv[1])
    groups, current = [], []
    for argument in sys.argv[2:]:
        if argument == "--":
            groups.append(current)
            current = []
        else:
            current.append(argument)
    groups.append(current)
    commands = [(int(group[0]), group[1:]) for group in groups]
    null = os.open(os.devnull, os.O_WRONLY)

    def run(argv):  # -> (wall ms, child cpu ms)
        start = time.perf_counter_ns()
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 1)])
        _, status, usage = os.wait4(pid, 0)
        wall = (time.perf_counter_ns() - start) / 1e6
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"time-processes: {' '.join(argv)} exited with {os.waitstatus_to_exitcode(status)}")
        return wall, (usage.ru_utime + usage.ru_stime) * 1e3

    for _, argv in commands:
        run(argv)
    most = max(runs for runs, _ in commands)
    for _ in range(rounds):
        results = [[] for _ in commands]
        for i in range(most):
            for k, (runs, argv) in enumerate(commands):
                # A command with fewer runs than the most is run on evenly spaced turns.
                if i * runs // most != (i + 1) * runs // most or runs == most:
                    results[k].append(run(argv))
        print(" ".join(f"{statistics.median(r[0] for r in rs):.3f} {statistics.median(r[1] for r in rs):.3f}"
                       for rs in results), flush=True)


if __name__ == "__main__":
    main()
