"""Process helpers shared by the tests that start real processes."""


def alive(pid):
    """Whether ``pid`` runs; a zombie counts as dead (init reaps it soon)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
