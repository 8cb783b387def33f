"""The memory planner: exact parameter bytes per device against real sharded arrays."""

import jax
from absl.testing import absltest

from sidjax.config_files import load_config
from sidjax.model.config import get_preset
from sidjax.model.model import init_sharded_params
from sidjax.plan import memory as plan
from sidjax.plan import stage as plan_stage
from sidjax.train.mesh import make_mesh


class PlanTest(absltest.TestCase):

    def test_param_bytes_equal_real_sharded_arrays(self):
        config = get_preset("small")
        for shape in ({"data": 2, "fsdp": 2, "tensor": 2}, {"data": 1, "fsdp": 8, "tensor": 1},
                      {"data": 8, "fsdp": 1, "tensor": 1}):
            mesh = make_mesh(shape)
            params = init_sharded_params(config, jax.random.PRNGKey(0), mesh)
            real = sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(params))
            planned = plan.plan(config, shape, batch=8, seq_len=64)
            self.assertEqual(round(planned["params"] * plan.GIB), real, shape)
            self.assertEqual(planned["optimizer"], 2 * planned["params"])

    def test_grpo_adds_reference_and_cache_and_fit_verdict(self):
        config = get_preset("qwen3-1.7b", param_dtype="bfloat16", dtype="bfloat16", remat="full")
        shape = {"data": 1, "fsdp": 16, "tensor": 1}
        sft = plan.plan(config, shape, batch=256, seq_len=1024, micro_batches=16,
                        device_memory_gb=16)
        grpo = plan.plan(config, shape, batch=128, seq_len=2048, stage="grpo", sample_rows=512,
                         prompt_len=1024, response_len=1024, device_memory_gb=16)
        self.assertAlmostEqual(sft["params"], config.num_params() * 2 / 16 / plan.GIB, places=2)
        self.assertEqual(grpo["reference"], grpo["params"])
        self.assertGreater(grpo["kv_cache"], 0)
        self.assertTrue(sft["fits"])
        tight = plan.plan(config, shape, batch=256, seq_len=1024, device_memory_gb=0.5)
        self.assertFalse(tight["fits"])
        with self.assertRaisesRegex(ValueError, "explicit mesh sizes"):
            plan.plan(config, {"data": -1}, batch=8, seq_len=8)

    def test_plan_stage_runs(self):
        config = load_config("configs/plan.py", {"plan.model": "small", "mesh.shape.fsdp": 8})
        out = plan_stage.train_and_evaluate(config, self.create_tempdir().full_path)
        self.assertEqual(set(out), {"sft", "grpo"})


if __name__ == "__main__":
    absltest.main()
