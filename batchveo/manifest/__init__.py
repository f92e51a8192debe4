"""Manifests (YAML or CSV) to validated ``JobSpec``s: ``read_manifests``.

The modules, in the order a row meets them:

- ``loader``: ``read_manifests`` and ``Manifests``; every file, every row, every problem
  (``stream_manifests``: the same handed on in chunks, for a load that keeps none).
- ``opening``: reading a file at all (a regular file, at most ``MAX_MANIFEST_BYTES``).
- ``yamlfile`` and ``csvfile``: the two formats, their syntax and where a problem is;
  ``yamljobs``: a YAML file parsed from the file, each job handed on as it is composed
  (``yamlscan``: its bytes scanned first; ``yamlstream``: one job at a time), or read
  whole by ``yamlfile`` (``yamlaliases``: alias bombs refused).
- ``rows``: the keys a row may have, the file's defaults, what a reader hands the loader.
- ``job``: one job, in four steps: fields -> inputs -> rules -> variants.
- ``chaining``: scene chains, ``extends: ID`` and ``chain: [...]`` (hops checked against
  their route's extension limits, ``chains``).
- ``fields``: one value checked and made canonical (coercion, prompt, model, id, output).
- ``images``: an image's type (bytes, then Pillow's header) and its sha256.
- ``rules``: the API's cross-field rules and each provider's, checked before paying.
- ``routing``: a job's route (``defaults:`` over the loading command's flags).
- ``review``: ``defaults: review:``, a batch's review settings.
- ``output_paths``: videos the file system could not take, found at load.
- ``show``: how a message quotes a value; ``gcpause``: ``gc_paused()`` for one-shot loads.
"""

from batchveo.manifest.fields import (
    MAX_ID_CHARS,
    MAX_NUMBER_DIGITS,
    MAX_PROMPT_CHARS,
    MAX_REPEAT,
    MAX_SEED,
)
from batchveo.manifest.gcpause import gc_paused
from batchveo.manifest.images import MAX_IMAGE_BYTES, MAX_IMAGE_SIDE_PX
from batchveo.manifest.loader import Manifests, read_manifests, stream_manifests
from batchveo.manifest.opening import MAX_MANIFEST_BYTES
from batchveo.manifest.output_paths import (
    DOWNLOAD_NAME_EXTRA_BYTES,
    MAX_NAME_BYTES,
    MAX_OUTPUT_PATH_BYTES,
    OutputTree,
    output_clashes,
    output_parts,
)
from batchveo.manifest.routing import check_route
from batchveo.manifest.rows import DEFAULT_KEYS, JOB_KEYS
from batchveo.manifest.show import MAX_SHOWN_CHARS
from batchveo.manifest.yamlaliases import MAX_YAML_EXPANDED_NODES

__all__ = [
    "DEFAULT_KEYS",
    "DOWNLOAD_NAME_EXTRA_BYTES",
    "JOB_KEYS",
    "MAX_ID_CHARS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_SIDE_PX",
    "MAX_MANIFEST_BYTES",
    "MAX_NAME_BYTES",
    "MAX_NUMBER_DIGITS",
    "MAX_OUTPUT_PATH_BYTES",
    "MAX_PROMPT_CHARS",
    "MAX_REPEAT",
    "MAX_SEED",
    "MAX_SHOWN_CHARS",
    "MAX_YAML_EXPANDED_NODES",
    "Manifests",
    "OutputTree",
    "check_route",
    "gc_paused",
    "output_clashes",
    "output_parts",
    "read_manifests",
    "stream_manifests",
]
