"""core/isolation.py from a user's own script: the child must not run the script again."""
import os
import subprocess
import sys

SCRIPT = """import os
from collabopt.core import isolation
print("script ran", flush=True)
print(isolation.call(os.getpid, what="probe") != os.getpid(), flush=True)
"""


def test_a_script_without_a_main_guard_runs_once_and_its_child_answers(tmp_path):
    """A pipeline script without `if __name__ == "__main__":` (as many are): multiprocessing would make
    the conversion child import it again and run the whole pipeline there (the run then failed with
    `Broken pipe` minutes later)."""
    script = tmp_path / "my_pipeline.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    assert (done.returncode, done.stdout) == (0, "script ran\nTrue\n"), done.stderr[-2000:]
