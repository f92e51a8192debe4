"""A faithful fake of the Veo long-running video API, served by a real aiohttp server.

Users rehearse a batch on it (``batchveo simulate``, ``make demo``), the test suite and the
benchmarks run against it. It speaks the wire contract of ``docs/veo-api.md``, the Gemini
v1beta format and Vertex AI on one port, and nothing more: a client that works here must
work against the real service, so the simulator never offers a convenience the service
lacks (it is, if anything, stricter). Everything test-only lives under ``/__sim/``. It
imports nothing of the client or the runner: only the model table (``batchveo.models``),
which the Gemini format's rules and the reviews read (Vertex's catalogue is its own,
``vertex_rules``), and ``batchveo.mp4``, which makes its videos last what they should and
reads an input's (or a reviewed video's) length.

- ``server``: ``Simulator``, the aiohttp app: routes, what every request counts, the
  ``/__sim/`` controls; ``serve_forever``.
- ``config``: ``SimConfig``, every knob, and how flags and JSON become one.
- ``generation``: how long operations take: ``MIN,MAX`` or a log-normal, scalable.
- ``gemini``: the Gemini format's submit and poll.
- ``rules``: the rules a submit's body must follow, per group.
- ``markers``: ``[sim:...]`` prompt markers that force an outcome.
- ``quota``: requests per minute, submits per day, operations at once.
- ``ops``: the operations, generated lazily by the clock.
- ``faults``: injected failures (resets, 5xx, 429s, the first polls).
- ``downloads``: the download handlers (videos, signed storage URLs, Cloud Storage reads);
  ``storage``: the videos' URIs, signatures and bytes (each as long as it should last).
- ``wire``: Google's and the reseller's envelopes, and the operation bodies.
- ``stats``: what the simulator counts (``GET /__sim/stats``); ``chains``: where each
  extension stands in its scene chain, and the hops per chain.
- ``vertex``: the Vertex AI service (submit, fetch, outputs inline or to Cloud Storage).
- ``vertex_auth``: who may call it, on which project; ``vertex_storage``: its Cloud Storage
  reads and writes.
- ``vertex_rules``: Vertex's model ids and the rules of its bodies; ``vertex_wire``: its
  answers.
- ``tokens``: the OAuth token endpoint and throwaway service-account keys.
- ``gcs``: the simulator's own Cloud Storage, and writes into another (an emulator).
- ``review``: ``generateContent`` on both formats: a review's checks, its marker-made
  verdicts and token counts.
- ``files``: the Gemini API's Files API (resumable uploads of videos to review, their
  processing, ``GET`` and ``DELETE``).
"""

from batchveo.sim.config import SimConfig
from batchveo.sim.server import Simulator, serve_forever

__all__ = ["SimConfig", "Simulator", "serve_forever"]
