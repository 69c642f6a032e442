"""Sample Factory's APPO on Pong, run in its own venv (tools/peer_venvs.sh sf) by
benchmarks/throughput_peers.py: Sample Factory's own Atari example (sf_examples.atari.train_atari,
its Atari defaults: CleanRL/SB3-equivalent wrappers on PongNoFrameskip-v4) with the command line's
arguments. ALE's envs are registered here, in this process and in the worker processes that
re-import this file: Sample Factory 2.1 pins Gymnasium 0.29, under which ale-py 0.12's `import
ale_py` skips its registration (its vector env needs Gymnasium 1.x's AutoresetMode, and the
import error aborts it)."""

import sys

from ale_py.registration import register_v0_v4_envs, register_v5_envs
from sf_examples.atari.train_atari import main

register_v0_v4_envs()
register_v5_envs()

if __name__ == "__main__":
    sys.exit(main())
