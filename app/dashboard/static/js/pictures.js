// Which pictures a job offers: one table from the catalog's capability and the dataset's
// kind to a picture route (docs/api.md). No per-model code: a new family declaring these
// capabilities gets the same pictures.

/** The kind of data from GET /v1/datasets/{id}: its task and shape [n, ...input]. */
export function dataKind(ds) {
  if (!ds) return "unknown";
  if (ds.task === "control") return "control";
  const input = (ds.shape || []).slice(1);
  if (input.length >= 2) return "image";
  const d = input[0];
  if (d === 1) return "1d";
  if (d === 2) return "points";
  if (d >= 16 && Number.isInteger(Math.sqrt(d))) return "image";
  return "vector";
}

function side(ds) {
  const input = (ds?.shape || []).slice(1);
  if (input.length >= 2) return input.slice(-2);
  const n = Math.round(Math.sqrt(input[0] || 64));
  return [n, n];
}

const ANY = null;

// capability, kinds it applies to (null: any), title, route (relative to the job or "/")
export const PICTURES = [
  { capability: "sample", kinds: ANY, title: "Samples",
    route: () => "samples?format=png&n=64&seed=0" },
  { capability: "log_prob", kinds: ["points"], title: "Learned density",
    route: () => "density.png" },
  { capability: "predict", kinds: ["1d"], tasks: ["regression"], title: "Uncertainty plot",
    route: () => "plot.png" },
  { capability: "predict", kinds: ANY, tasks: ["regression", "classification"],
    title: "Calibration (reliability diagram)", route: () => "reliability.png" },
  { capability: "receptive_field", kinds: ["image"], title: "Receptive field",
    route: (ds) => { const [hgt, wid] = side(ds); return `receptive-field.png?row=${hgt >> 1}&col=${wid >> 1}`; } },
  { capability: "complete", kinds: ["image"], title: "Completions",
    route: () => "completions.png?n=4&samples=3&seed=0" },
  { capability: "interpolate", kinds: ["image"], title: "Interpolation",
    route: () => "interpolate.png?a=0&b=1&steps=8" },
  { capability: "filters", kinds: ["image"], title: "Filters (each unit's weights)",
    route: () => "filters.png?n=64" },
  { capability: "chain", kinds: ["image"], title: "One Gibbs chain",
    route: () => "chain.png?seed=0&steps=50&frames=10" },
  { capability: "gradients", kinds: ANY, title: "Gradients through time",
    route: () => "gradients.png" },
  { capability: "trajectory", kinds: ANY, title: "Trajectory over the landscape",
    route: () => "trajectory.png" },
  { capability: "embed", kinds: ANY, title: "Embedding (2-D PCA)",
    route: () => "embedding.png" },
  { capability: "rollout", kinds: ["control"], title: "Evaluation episode",
    route: () => "episode.gif?seed=0" },
  { capability: "log_prob", kinds: ANY, finished: true, title: "Leaderboard on this dataset",
    route: (ds, job) => `/v1/leaderboard.png?dataset=${encodeURIComponent(job.dataset)}&limit=10`,
    builtinOnly: true },
];

/** [{title, url}] for a job, its model's catalog entry and its dataset. */
export function picturesFor(job, model, ds) {
  const caps = new Set(model?.capabilities || []);
  const kind = dataKind(ds);
  return PICTURES.filter((p) => caps.has(p.capability)
    && (p.kinds === ANY || p.kinds.includes(kind))
    && (!p.tasks || p.tasks.includes(ds?.task))
    && (!p.builtinOnly || ds?.kind === "builtin"))
    .map((p) => {
      const route = p.route(ds, job);
      const url = route.startsWith("/") ? route : `/v1/jobs/${encodeURIComponent(job.id)}/${route}`;
      return { title: p.title, url };
    });
}
