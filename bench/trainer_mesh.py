"""Toy-config training throughput on mesh (8,1,1) over 8 simulated CPU devices vs (1,1,1).

    python bench/trainer_mesh.py [--steps 600]

Both runs happen in this process on the same machine; the ratio is what to read.
Simulated devices share the host's cores, so on a 2-core laptop (8,1,1) mostly
measures partitioning overhead, not a speed-up.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402

from sidjax.config_files import load_config  # noqa: E402
from sidjax.data.iterator import BatchIterator  # noqa: E402
from sidjax.toy import regression  # noqa: E402
from sidjax.train import mesh as mesh_lib  # noqa: E402
from sidjax.train.trainer import Trainer  # noqa: E402

CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "toy.py")


def steps_per_sec(devices, steps: int) -> float:
    config = load_config(CONFIG, {
        "train.num_steps": steps, "eval.every_steps": 0, "ckpt.every_steps": 0,
        "log.progress": False, "log.tensorboard": False, "log.every_steps": steps,
    })
    train, evals = regression.split_data(config.toy)
    mesh = mesh_lib.make_mesh({"data": -1}, devices=devices)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(config, workdir, regression.make_task(config.toy, evals), mesh=mesh)
        result = trainer.fit(BatchIterator(train, config.train.batch_size, seed=0))
        trainer.close()
    return result.steps_per_sec


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    one = steps_per_sec(jax.devices()[:1], args.steps)
    eight = steps_per_sec(jax.devices()[:8], args.steps)
    print(f"toy config, {args.steps} steps, batch 64, {jax.devices()[0].platform}")
    print(f"mesh (1,1,1): {one:8.1f} steps/s")
    print(f"mesh (8,1,1): {eight:8.1f} steps/s")
    print(f"ratio (8,1,1)/(1,1,1): {eight / one:.2f}")


if __name__ == "__main__":
    main()
