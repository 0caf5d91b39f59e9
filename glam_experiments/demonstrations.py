"""Record seeded episodes of the BabyAI bot (or of any agent) on a BabyAI-Text level as a local Minari dataset.

    python -m glam_experiments.demonstrations --env-id BabyAI-Text-PickUpS5N2-v0 --episodes 1000 --seed 0

writes the dataset ``babyai-text/PickUpS5N2/bot-v0`` under Minari's local root
(``$MINARI_DATASETS_PATH``, by default ``~/.minari/datasets``), which any offline-RL or
behaviour-cloning code reads back with ``minari.load_dataset`` (or :func:`load_demonstrations`).

- The observations are the env's own: BabyAI-Text's :class:`gymnasium.spaces.Dict` of fixed-size
  arrays (:mod:`babyai_text.observation`), so :func:`babyai_text.decode_observation` gives the mission,
  the sentences and the action names of any stored step back; the actions are its ``Discrete(6)``.
- Episode ``k`` is reset with seed ``seed + k``, and Minari stores that seed with the episode
  (:func:`episode_seeds`): ``dataset.recover_environment()`` (the same id and ``gym.make`` kwargs)
  reset with it and stepped with the stored actions replays every observation.
- The agent is any spec :func:`glam_experiments.agents.load_agent` takes: ``bot`` (minigrid's
  BabyAIBot, the default), ``random``, a saved ``.zip`` or a language-model name.

Minari is an optional dependency: ``pip install "glam-rl[data]"``.  See docs/demonstrations.md.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import json
import re
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

import babyai_text
from glam_experiments.cli import ArgumentParser, UsageError, require_at_least, run_command, summary

if TYPE_CHECKING:
    import minari

#: the namespace of the datasets this module names (Minari's ids: ``namespace/name/variant-vN``)
NAMESPACE = "babyai-text"
#: what to install when Minari (or its HDF5 storage) is missing
INSTALL_HINT = 'pip install "glam-rl[data]"'
#: what recording needs besides: the agents (SB3, even for the bot) and the evaluation's modules
RECORD_INSTALL_HINT = 'pip install "glam-rl[data,policy,train]"'
#: Minari's storage format we write: its default, which needs only h5py (arrow needs pyarrow, a wheel of tens of MB)
DATA_FORMAT = "hdf5"
#: algorithm names of the reference agents in the dataset's metadata
ALGORITHM_NAMES = {"bot": "BabyAIBot", "random": "RandomAgent"}
#: a dataset version suffix, which Minari's ids require (``parse_dataset_id`` fails without it)
_VERSION = re.compile(r"-v\d+$")


def require_minari() -> Any:
    """The ``minari`` module, with the pieces its HDF5 storage imports.

    :raises ImportError: naming ``pip install "glam-rl[data]"`` when Minari, h5py or Pillow is missing.
    """
    # Minari imports its storage backend (h5py, and Pillow for its JPEG option) only when a
    # dataset is written or read: checked now, not after the episodes are recorded.
    try:
        import h5py  # noqa: F401
        import minari
        import PIL  # noqa: F401
    except ImportError as err:
        raise ImportError(f"demonstration datasets need Minari with its HDF5 storage: {INSTALL_HINT} ({err})") from err
    return minari


def known_env_ids() -> list[str]:
    """The ids demonstrations can be recorded on: every BabyAI-Text id and GLAM's original ids."""
    return [*babyai_text.registered_ids(), *babyai_text.glam_ids()]


def check_env_id(env_id: str) -> None:
    """Refuse an id that is not a BabyAI-Text (or GLAM) level, naming the closest ones.

    :raises ValueError: ``unknown BabyAI-Text id ... Did you mean ...``.
    """
    known = known_env_ids()
    if env_id in known:
        return
    close = [i for i in known if env_id.lower() in i.lower()]
    close += [i for i in difflib.get_close_matches(env_id, known, n=5, cutoff=0.6) if i not in close]
    hint = f" Did you mean one of: {', '.join(close[:8])}?" if close else " See babyai_text.registered_ids()."
    raise ValueError(f"unknown BabyAI-Text id {env_id!r}.{hint}")


def _slug(text: str) -> str:
    """``text`` with what a Minari id segment cannot hold replaced by ``_``."""
    return re.sub(r"[^\w-]+", "_", text).strip("_-") or "agent"


def _level_name(env_id: str) -> str:
    """``BabyAI-Text-PickUpS5N2-v0`` → ``PickUpS5N2``; ``BabyAI-MixedTrainLocal-v0`` → ``MixedTrainLocal``."""
    name = re.sub(r"-v\d+$", "", env_id)
    for prefix in ("BabyAI-Text-", "BabyAI-"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _agent_name(agent: str) -> str:
    """The agent's part of a dataset id: ``bot``, ``random``, a model's last path part, a zip's run folder."""
    path = Path(agent)
    if agent.endswith(".zip"):  # runs/<run>/model.zip: the run says which agent it is, "model" does not
        return _slug(f"{path.parent.name}_{path.stem}" if path.parent.name else path.stem)
    return _slug(path.name or agent)


def default_dataset_id(env_id: str, agent: str = "bot", env_kwargs: dict[str, Any] | None = None) -> str:
    """The Minari id of ``agent``'s demonstrations on ``env_id``: ``babyai-text/<level>/<agent>-v0``.

    ``gym.make`` kwargs are part of the name (``bot-kind_goto-observation_text-v0``), so that two
    differently configured levels never share an id.

    :param env_id: the env id.
    :param agent: the agent spec.
    :param env_kwargs: the env's extra ``gym.make`` arguments.
    """
    variant = _agent_name(agent)
    for key, value in sorted((env_kwargs or {}).items()):
        variant += f"-{_slug(str(key))}_{_slug(str(value))}"
    return f"{NAMESPACE}/{_slug(_level_name(env_id))}/{variant}-v0"


def check_dataset_id(dataset_id: str) -> None:
    """Refuse an id Minari cannot store (Minari's form: ``(namespace/)name-vN``).

    :raises ValueError: naming the expected form.
    """
    from minari.dataset.minari_dataset import parse_dataset_id

    form = "namespace/name/variant-vN, e.g. babyai-text/PickUpS5N2/bot-v0"
    if not _VERSION.search(dataset_id):
        raise ValueError(f"dataset id {dataset_id!r} has no version: Minari's ids end with -v<N> ({form})")
    try:
        parse_dataset_id(dataset_id)
    except ValueError:
        raise ValueError(f"malformed dataset id {dataset_id!r}: Minari's ids are {form}") from None


def dataset_path(dataset_id: str) -> Path:
    """Where the local dataset ``dataset_id`` lives (under ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``)."""
    from minari.storage import get_dataset_path

    return Path(get_dataset_path(dataset_id))


def dataset_exists(dataset_id: str) -> bool:
    """Whether a local dataset (or anything else) already occupies ``dataset_id``'s folder."""
    return dataset_path(dataset_id).exists()


#: how long a recording waits for another process recording the same dataset id
RECORDING_WAIT = 3600.0


@contextmanager
def _recording_lock(dataset_id: str) -> Iterator[None]:
    """One process at a time records (or replaces) ``dataset_id``: two jobs started together record it once."""
    from llm_policy.file_lock import exclusive

    path = dataset_path(dataset_id)
    fix = "wait for that recording to end, or record another dataset id"
    with exclusive(
        path.parent / f".{path.name}.lock", f"recording the Minari dataset {dataset_id}", RECORDING_WAIT, fix
    ):
        yield


def _interrupted_recording(dataset_id: str) -> bool:
    """Whether ``dataset_id``'s folder is a recording of ours that did not finish (the ``recording`` metadata,
    written last, is missing); a dataset that another tool wrote is not ours to judge."""
    try:
        metadata = json.loads((dataset_path(dataset_id) / "data" / "metadata.json").read_text())
    except (OSError, ValueError):
        return True  # killed before Minari wrote its metadata: nothing loadable
    return "recording" not in metadata and str(metadata.get("code_permalink", "")).startswith("glam-rl")


@dataclass
class _Episode:
    seed: int
    observations: dict[str, np.ndarray]
    """each key stacked over the T + 1 steps"""
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    successes: np.ndarray
    """``info["success"]`` of the T + 1 steps (the reset's first)"""

    @property
    def success(self) -> bool:
        return bool(self.successes[-1])


def _stack(observations: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {key: np.stack([np.asarray(o[key]) for o in observations]) for key in observations[0]}


def _play(agent: Any, env: gym.Env, seed: int, deterministic: bool) -> _Episode:
    """One episode of ``agent`` on ``env``, reset with ``seed``."""
    obs, info = env.reset(seed=seed)
    observations, successes = [obs], [bool(info.get("success", False))]
    actions: list[int] = []
    rewards: list[float] = []
    terminations: list[bool] = []
    truncations: list[bool] = []
    state, done = None, False
    while not done:
        # the agents take SB3's batched input (a batch of one), as evaluation hands it to them
        batch = {key: np.asarray(value)[None] for key, value in obs.items()}
        action, state = agent.predict(
            batch, state=state, episode_start=np.array([not actions]), deterministic=deterministic
        )
        actions.append(int(np.asarray(action).reshape(-1)[0]))
        obs, reward, terminated, truncated, info = env.step(actions[-1])
        observations.append(obs)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        successes.append(bool(info.get("success", False)))
        done = terminated or truncated
    return _Episode(
        seed=seed,
        observations=_stack(observations),
        actions=np.array(actions, dtype=np.int64),
        rewards=np.array(rewards, dtype=np.float64),
        terminations=np.array(terminations),
        truncations=np.array(truncations),
        successes=np.array(successes),
    )


def _load_agent(agent: Any, env: gym.Env, llm_kwargs: dict[str, Any] | None, seed: int) -> tuple[Any, str]:
    """The agent (bound to ``env``) and its algorithm name; specs are loaded as the evaluation loads them."""
    try:  # the evaluation's agents (the bot included) live on SB3's interface
        from stable_baselines3.common.utils import set_random_seed
        from stable_baselines3.common.vec_env import DummyVecEnv

        from glam_baselines import BotAgent
        from glam_experiments.agents import load_agent
    except ImportError as err:
        raise ImportError(f"recording plays the evaluation's agents: {RECORD_INSTALL_HINT} ({err})") from err

    # The DummyVecEnv holds our env itself: the bot reads the state of the env that is stepped.
    vec = DummyVecEnv([lambda: env])
    if isinstance(agent, str):
        name = ALGORITHM_NAMES.get(agent)
        agent = load_agent(agent, vec, llm_kwargs, seed=seed)
        name = name or type(getattr(agent, "policy", agent)).__name__
    else:
        if isinstance(agent, BotAgent):  # it reads the state of the env it plays: this one
            agent = BotAgent(vec)
        name = type(getattr(agent, "policy", agent)).__name__
    set_random_seed(seed)  # the network agents' sampling is reproducible too (as in the evaluation)
    return agent, name


def _requirements() -> list[str]:
    """The package whose levels the dataset was recorded on (Minari warns on recovery when it differs)."""
    try:
        version = importlib.metadata.version("glam-rl")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        version = babyai_text.__version__
    return [f"glam-rl=={version}"]


def record_demonstrations(
    env_id: str,
    episodes: int,
    seed: int = 0,
    agent: Any = "bot",
    dataset_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
    deterministic: bool = False,
    llm_kwargs: dict[str, Any] | None = None,
    author: str | None = "glam-rl",
    author_email: str | None = None,
    code_permalink: str | None = None,
    description: str | None = None,
) -> minari.MinariDataset:
    """Play ``episodes`` episodes of ``agent`` on ``env_id``, episode ``k`` reset with seed ``seed + k``,
    and write them as the local Minari dataset ``dataset_id``.

    The episodes are kept in memory (about 5 kB per step with the default observation) and written
    at the end, so an interrupted recording leaves nothing behind and replaces nothing.

    :param env_id: a BabyAI-Text id (or one of GLAM's ids, with ``env_kwargs={"observation": "text"}``).
    :param episodes: how many episodes (>= 1).
    :param seed: the first episode's reset seed; also seeds the agent's sampling.
    :param agent: ``"bot"``, ``"random"``, a saved ``.zip``, a language-model name or directory (see
        :func:`glam_experiments.agents.load_agent`), or a loaded agent with SB3's ``predict``.
    :param dataset_id: the Minari id (default: :func:`default_dataset_id`, e.g. ``babyai-text/PickUpS5N2/bot-v0``).
    :param env_kwargs: extra ``gym.make`` arguments; recorded in the dataset's env spec.
    :param overwrite: replace an existing dataset of the same id (otherwise refused).
    :param deterministic: the agents' most probable action instead of sampling.
    :param llm_kwargs: extra :class:`~llm_policy.LLMPolicy` arguments for a zero-shot language model.
    :param author: the dataset's author (Minari's metadata).
    :param author_email: the author's contact (Minari's metadata).
    :param code_permalink: a link to the code that recorded it (default: this package and module).
    :param description: the dataset's description (default: what was recorded, with its success rate).
    :return: the dataset, as ``minari.load_dataset(dataset_id)`` returns it.
    :raises ImportError: Minari is not installed (``pip install "glam-rl[data]"``), or the agents'
        dependencies are not (``pip install "glam-rl[data,policy,train]"``).
    :raises ValueError: an unknown env id or agent, a malformed or existing dataset id, an observation
        space Minari cannot store.
    """
    minari = require_minari()
    from minari.data_collector import EpisodeBuffer
    from minari.serialization import serialize_space

    require_at_least({"episodes": episodes})
    check_env_id(env_id)
    env_kwargs = dict(env_kwargs or {})
    agent_spec = agent if isinstance(agent, str) else type(agent).__name__
    dataset_id = dataset_id or default_dataset_id(env_id, agent_spec, env_kwargs)
    check_dataset_id(dataset_id)
    with _recording_lock(dataset_id):  # the check below and the write, for one process at a time
        # Refused before the (possibly long) recording, not after it.
        if dataset_exists(dataset_id) and not overwrite:
            raise ValueError(
                f"dataset {dataset_id!r} already exists ({dataset_path(dataset_id)}); "
                "choose another dataset id (--dataset-id) or pass overwrite=True (--overwrite) to replace it"
            )
        env = gym.make(env_id, **env_kwargs)
        try:
            try:
                serialize_space(env.observation_space)
            except NotImplementedError:
                raise ValueError(
                    f"Minari cannot store {env_id}'s observation space {env.observation_space} (minigrid's mission "
                    "string): record the text observation, env_kwargs={'observation': 'text'} "
                    "(--env-kwarg observation=text)"
                ) from None
            kinds = getattr(env.unwrapped, "_kinds", {})
            if env_id in babyai_text.GLAM_IDS and len(kinds) > 1 and not {"kind", "seed"} & set(env_kwargs):
                # GLAM's ids draw their task kind once, when the env is made (not per reset): unpinned,
                # recover_environment() would make another level than the one recorded.
                raise ValueError(
                    f"{env_id} draws its task kind when it is made, so the recovered env could differ from the "
                    f"recorded one: pin it, env_kwargs={{'kind': ...}} (--env-kwarg kind=...; one of {sorted(kinds)}) "
                    "or env_kwargs={'seed': ...}"
                )
            player, algorithm = _load_agent(agent, env, llm_kwargs, seed)
            recorded = [_play(player, env, seed + k, deterministic) for k in range(episodes)]
        finally:
            env.close()

        steps = sum(len(e.actions) for e in recorded)
        success_rate = float(np.mean([e.success for e in recorded]))
        kwargs_text = f" {json.dumps(env_kwargs, sort_keys=True)}" if env_kwargs else ""
        if description is None:
            description = (
                f"{episodes} episodes ({steps} steps) of {algorithm} ({agent_spec}) on {env_id}{kwargs_text}; "
                f"episode k reset with seed {seed} + k; success rate {success_rate:.3f}. Observations are "
                "BabyAI-Text's arrays: babyai_text.decode_observation(obs) gives the mission and the sentences back."
            )
        buffers = [
            EpisodeBuffer(
                id=k,
                seed=e.seed,
                observations=e.observations,
                actions=e.actions,
                rewards=list(e.rewards),
                terminations=list(e.terminations),
                truncations=list(e.truncations),
                infos={"success": e.successes},
            )
            for k, e in enumerate(recorded)
        ]
        path = dataset_path(dataset_id)
        if path.exists():  # overwrite: only now that the new episodes are recorded
            shutil.rmtree(path)
        spec_env = gym.make(env_id, **env_kwargs)  # the spec Minari records: the id and the kwargs
        try:
            with warnings.catch_warnings():
                # None on purpose: no contact given; the recording env is the evaluation env
                warnings.filterwarnings("ignore", message=r"`(author|author_email|eval_env)` is set to None")
                dataset = minari.create_dataset_from_buffers(
                    dataset_id=dataset_id,
                    buffer=buffers,
                    env=spec_env,
                    algorithm_name=algorithm,
                    author=author,
                    author_email=author_email,
                    code_permalink=code_permalink
                    or f"glam-rl: glam_experiments/demonstrations.py ({_requirements()[0]})",
                    description=description,
                    data_format=DATA_FORMAT,
                    requirements=_requirements(),
                    # Minari's default JPEG-encodes image spaces (lossy): the symbolic view must stay exact
                    jpeg_encoding=False,
                )
        finally:
            spec_env.close()
        dataset.storage.update_metadata(
            {
                "recording": {
                    "env_id": env_id,
                    "env_kwargs": env_kwargs,
                    "agent": agent_spec,
                    "seed": seed,
                    "deterministic": deterministic,
                    "episodes": episodes,
                    "steps": steps,
                    "success_rate": success_rate,
                }
            }
        )
        return dataset


def load_demonstrations(dataset_id: str) -> minari.MinariDataset:
    """The local Minari dataset ``dataset_id`` (as ``minari.load_dataset``), with clear errors.

    ``import babyai_text`` is done, so ``dataset.recover_environment()`` finds the level.

    :param dataset_id: e.g. ``babyai-text/PickUpS5N2/bot-v0``.
    :raises ImportError: Minari is not installed (``pip install "glam-rl[data]"``).
    :raises FileNotFoundError: no local dataset of that id (the message lists the local ones).
    """
    minari = require_minari()
    check_dataset_id(dataset_id)
    if not (dataset_path(dataset_id) / "data").exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Minari warns about any misconfigured folder it lists
            local = sorted(minari.list_local_datasets())
        close = difflib.get_close_matches(dataset_id, local, n=5, cutoff=0.5)
        listed = f"did you mean one of: {', '.join(close)}?" if close else f"local datasets: {local or 'none'}."
        raise FileNotFoundError(
            f"no local Minari dataset {dataset_id!r} under {dataset_path('')}; {listed} "
            "Record one with: python -m glam_experiments.demonstrations --env-id <BabyAI-Text id>"
        )
    return minari.load_dataset(dataset_id)


def bot_demonstrations(env_id: str, episodes: int) -> str:
    """The id of the bot's demonstrations on ``env_id`` (:func:`default_dataset_id`), recorded first (episode
    ``k`` reset with seed ``k``) if no local dataset has that id; the main job clones them before PPO.

    :raises ValueError: the local dataset holds fewer than ``episodes`` episodes (the message says how to record more).
    """
    dataset_id = default_dataset_id(env_id)
    with _recording_lock(dataset_id):
        interrupted = dataset_exists(dataset_id) and _interrupted_recording(dataset_id)
        if interrupted:
            print(f"{dataset_path(dataset_id)} holds an interrupted recording: recording it again", file=sys.stderr)
        if interrupted or not dataset_exists(dataset_id):
            record_demonstrations(env_id, episodes, seed=0, dataset_id=dataset_id, overwrite=interrupted)
            return dataset_id
    held = load_demonstrations(dataset_id).total_episodes
    if held < episodes:
        raise ValueError(
            f"{dataset_id} holds {held} episodes, fewer than the {episodes} asked for: record them with "
            f"python -m glam_experiments.demonstrations --env-id {env_id} --episodes {episodes} --overwrite"
        )
    return dataset_id


def episode_seeds(dataset: minari.MinariDataset) -> list[int | None]:
    """The reset seed of each of ``dataset``'s episodes, in ``iterate_episodes()`` order (``None``: not stored)."""
    metadata = dataset.storage.get_episode_metadata(dataset.episode_indices)
    return [m.get("seed") for m in metadata]


def main(argv: list[str] | None = None) -> None:
    run_command(_main, argv)


def _env_kwarg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` → ``(KEY, VALUE)``, the value read as JSON when it is (``5``, ``true``), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _main(argv: list[str]) -> None:
    parser = ArgumentParser(description=summary(__doc__))
    parser.add_argument("--env-id", required=True, help="a BabyAI-Text id, e.g. BabyAI-Text-PickUpS5N2-v0")
    parser.add_argument("--episodes", type=int, default=1000, help="episodes to record (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="episode k is reset with seed + k")
    parser.add_argument("--agent", default="bot", help="bot (default), random, a saved .zip or a language model")
    parser.add_argument("--dataset-id", default=None, help="Minari id (default: babyai-text/<level>/<agent>-v0)")
    parser.add_argument(
        "--env-kwarg",
        action="append",
        type=_env_kwarg,
        default=[],
        metavar="KEY=VALUE",
        help="repeatable gym.make argument, e.g. observation=text for GLAM's ids",
    )
    parser.add_argument("--deterministic", action="store_true", help="the agent's most probable action")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of the same id")
    parser.add_argument("--author", default="glam-rl", help="Minari metadata")
    parser.add_argument("--author-email", default=None, help="Minari metadata")
    parser.add_argument("--code-permalink", default=None, help="Minari metadata: a link to the recording code")
    args = parser.parse_args(argv)
    require_at_least({"episodes": args.episodes})
    try:
        dataset = record_demonstrations(
            args.env_id,
            args.episodes,
            seed=args.seed,
            agent=args.agent,
            dataset_id=args.dataset_id,
            env_kwargs=dict(args.env_kwarg),
            overwrite=args.overwrite,
            deterministic=args.deterministic,
            author=args.author,
            author_email=args.author_email,
            code_permalink=args.code_permalink,
        )
    except ImportError as err:  # a missing extra is the user's to fix: one line, not a traceback
        raise UsageError(str(err)) from None
    metadata = dataset.storage.metadata
    recording = metadata["recording"]
    print(f"wrote Minari dataset {dataset.id} ({dataset_path(dataset.id)})")
    print(
        f"  {dataset.total_episodes} episodes, {dataset.total_steps} steps, "
        f"success rate {recording['success_rate']:.3f} ({metadata['algorithm_name']})"
    )
    print(f'  load it: minari.load_dataset("{dataset.id}")')


if __name__ == "__main__":
    main()
