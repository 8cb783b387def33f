"""Executes the notebooks in notebooks/ with nbclient, for the tests."""

import os

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
NOTEBOOKS = os.path.join(REPO, "notebooks")


def execute(name: str, env: dict[str, str], timeout: int = 900):
    """Runs notebooks/<name> in a fresh kernel; returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    with open(os.path.join(NOTEBOOKS, name)) as f:
        notebook = nbformat.read(f, as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # The kernel inherits this process's environment.
    try:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": REPO}})
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook


def outputs_text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            data = out.get("data", {})
            parts.append(data.get("text/markdown", "") + data.get("text/plain", ""))
    return "\n".join(parts)
