"""sidjax: LLM recommenders that reason over Semantic IDs, in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="sidjax",
    version="0.1.0",
    description=(
        "JAX/Flax re-implementation of SIDReasoner: Semantic-ID tokenisation, "
        "SID-aligned decoder LLMs, reasoning SFT and GRPO for generative recommendation."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # configs/ ships inside the package as sidjax.configs, so `load_config("grpo.py")` and
    # `--config=configs/grpo.py` find it from any directory, in any kind of install.
    packages=find_packages(include=["sidjax", "sidjax.*"]) + ["sidjax.configs"],
    package_dir={"sidjax.configs": "configs"},
    package_data={"sidjax.model": ["templates/*.jinja"]},
    install_requires=[
        "jax>=0.8,<0.11",
        # One flax release line: the sharding metadata names changed between releases.
        "flax>=0.12,<0.13",
        "optax>=0.2.5,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "transformers>=4.57,<6",
        "sentencepiece>=0.2,<0.3",
        "tensorflow-datasets>=4.9.8,<5",
        # tensorflow-datasets imports it without declaring it.
        "importlib_resources>=6",
        "ml-collections>=1.0,<2",
        "absl-py>=2.1,<3",
        "numpy>=1.26,<3",
        "scipy>=1.11",  # Sparse TF-IDF; already required by jax.
        # TensorBoard event files without TensorFlow.
        "tensorboardX>=2.6,<3",
    ],
    extras_require={
        # torch only for tests that compare against Hugging Face transformers.
        # nbclient + ipykernel execute the notebooks in notebooks/ (tests/test_notebooks.py).
        "test": ["pytest>=8", "chex>=0.1.89", "torch==2.13.0", "matplotlib>=3.8",
                 "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29"],
        # PNG plots (SID code usage, GRPO curves); everything else runs without it.
        "plot": ["matplotlib>=3.8"],
        # bench/grpo_step.py compares against TRL's GRPOTrainer (transformers generation).
        "bench": ["torch==2.13.0", "trl>=1.16,<2", "datasets>=3", "accelerate>=1.4"],
    },
)
