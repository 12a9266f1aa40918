"""The child process that grades one submission: ``python -m resnet_np.grade._child NUMBER FILE RESULTS``.

It imports the student's file, runs the exercise's checks and appends one JSON line per check to
RESULTS as each one ends (flushed at once: when the submission loops forever or kills the process,
what was written stays, and the parent grader reports the rest). The student's prints go to this
process's stdout, which the parent keeps apart from the results.
"""

import json
import sys


def _write(out, record):
    out.write(json.dumps(record) + "\n")
    out.flush()


def main(argv):
    number, path, results = int(argv[0]), argv[1], argv[2]
    sys.argv = [path]  # the submission sees itself as the script, not the grader's arguments
    from . import _check_records  # imported here: the grader's own import errors then reach stderr

    with open(results, "a", encoding="utf-8") as out:
        for record in _check_records(number, path):
            _write(out, record)
        _write(out, {"done": True})


if __name__ == "__main__":
    main(sys.argv[1:])
