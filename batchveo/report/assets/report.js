// The morning report's script, inlined into the page by batchveo.report.page.
//
// The page is complete without it (server-rendered cards, every video also a link):
// the script only filters, searches, sorts and lazy-loads. It reads everything it
// needs from the page itself: the cards' data attributes, and the order of the states
// for "sort by state" from the grid's data-state-order (written by the page from its
// own state order, so the two cannot drift). A reviewed card has data-review (passed,
// flagged, error, skipped) and data-score; its defects are a.seek links (data-t: the
// second) that seek the card's video.
(function () {
  "use strict";
  const doc = document;
  const grid = doc.getElementById("grid");
  const stateFilter = doc.getElementById("f-state");
  const batchFilter = doc.getElementById("f-batch");
  const search = doc.getElementById("f-q");
  const reviewFilter = doc.getElementById("f-review"); // only on a page with verdicts
  const sortBy = doc.getElementById("f-sort");
  const shown = doc.getElementById("shown");

  // The grid's data-state-order lists the states, most urgent first: each gets its rank.
  const rank = {};
  (grid.dataset.stateOrder || "").split(" ").forEach((state, i) => {
    rank[state] = i;
  });

  // An item's verdicts: its own, or those of the cards inside it (a row of several).
  function verdicts(item) {
    const cards = item.matches("[data-review]")
      ? [item]
      : Array.from(item.querySelectorAll("[data-review]"));
    const scores = cards.filter((c) => c.dataset.score !== undefined);
    return {
      reviews: cards.map((c) => c.dataset.review),
      scores: scores.map((c) => Number(c.dataset.score)),
    };
  }

  // One entry per card, in the order the page was written.
  const items = Array.from(grid.children, (card, i) => {
    const prompt = card.querySelector(".prompt");
    const v = verdicts(card);
    return {
      el: card,
      i: i,
      id: card.querySelector(".jid").textContent,
      state: card.dataset.state,
      batch: card.dataset.batch,
      gen: card.dataset.gen === "" ? -1 : Number(card.dataset.gen),
      reviews: v.reviews,
      low: v.scores.length ? Math.min(...v.scores) : null, // its lowest score
      high: v.scores.length ? Math.max(...v.scores) : null,
      text: (prompt ? prompt.textContent : "").toLowerCase(),
    };
  });

  // Show the cards that match every filter; a search matches a prompt, or an id exactly.
  function apply() {
    const state = stateFilter.value;
    const batch = batchFilter.value;
    const q = search.value.trim().toLowerCase();
    const review = reviewFilter ? reviewFilter.value : "";
    let n = 0;
    for (const x of items) {
      const ok =
        (!state || x.state === state) &&
        (!batch || x.batch === batch) &&
        (!review || x.reviews.indexOf(review) >= 0) &&
        (!q || x.text.indexOf(q) >= 0 || x.id.toLowerCase() === q);
      x.el.hidden = !ok;
      if (ok) n++;
    }
    shown.textContent = n + " of " + items.length + " shown";
    doc.documentElement.dataset.shown = n;
  }

  const byLoadOrder = (a, b) => a.i - b.i;
  // Cards without a score go last either way.
  const byScore = (key, sign) => (a, b) =>
    (a[key] === null) - (b[key] === null) || sign * (a[key] - b[key]) || a.i - b.i;
  const comparators = {
    id: (a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }),
    state: (a, b) => rank[a.state] - rank[b.state] || a.i - b.i,
    gen: (a, b) => b.gen - a.gen || a.i - b.i, // slowest generation first
    score: byScore("low", 1), // lowest score first
    "-score": byScore("high", -1),
  };

  function sort() {
    const compare = comparators[sortBy.value] || byLoadOrder;
    const frag = doc.createDocumentFragment();
    items.slice().sort(compare).forEach((x) => frag.appendChild(x.el));
    grid.appendChild(frag);
  }

  // A video gets its src only near the viewport, and loads nothing until it is played:
  // its poster frame (a small JPEG beside it) is what the card shows.
  function load(card) {
    for (const video of card.querySelectorAll("video[data-src]")) {
      if (!video.getAttribute("src")) {
        video.src = video.dataset.src;
      }
    }
  }

  // A defect's time seeks the card's video there and plays it. The video may have no
  // src yet (preload="none", far from the viewport): give it its src, ask for its
  // metadata, and seek once it has them (a seek before that is lost).
  function seek(video, seconds) {
    const go = () => {
      video.currentTime = seconds;
      const playing = video.play();
      if (playing && playing.catch) playing.catch(() => {}); // refused: the frame shows
    };
    if (!video.getAttribute("src") && video.dataset.src) video.src = video.dataset.src;
    if (video.readyState >= 1) {
      go();
      return;
    }
    video.addEventListener("loadedmetadata", go, { once: true });
    video.preload = "metadata";
    video.load();
  }

  grid.addEventListener("click", (e) => {
    const link = e.target.closest ? e.target.closest("a.seek") : null;
    const card = link && link.closest("article");
    const video = card && card.querySelector("video");
    if (!video) return; // no player: the link opens the video at that time (#t=)
    e.preventDefault();
    seek(video, Number(link.dataset.t));
  });

  if ("IntersectionObserver" in window) {
    const io = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          if (e.isIntersecting) {
            io.unobserve(e.target);
            load(e.target);
          }
        }
      },
      { rootMargin: "600px 0px" }
    );
    for (const x of items) {
      if (x.el.querySelector("video")) io.observe(x.el);
    }
  } else {
    items.forEach((x) => load(x.el));
  }

  // A link to a card (#job-...) that a filter hides clears the filters to show it.
  function reveal() {
    const hash = location.hash.slice(1);
    let target = hash && doc.getElementById(hash);
    if (!target && hash) {
      try {
        target = doc.getElementById(decodeURIComponent(hash));
      } catch (e) {
        // not a valid escape: no such card
      }
    }
    if (target && target.hidden) {
      stateFilter.value = batchFilter.value = search.value = "";
      if (reviewFilter) reviewFilter.value = "";
      apply();
      target.scrollIntoView();
    }
  }

  stateFilter.addEventListener("change", apply);
  batchFilter.addEventListener("change", apply);
  search.addEventListener("input", apply);
  if (reviewFilter) reviewFilter.addEventListener("change", apply);
  sortBy.addEventListener("change", sort);
  // The legend's states are buttons: one click filters to that state, a second clears it.
  for (const button of doc.querySelectorAll("[data-pick]")) {
    button.addEventListener("click", () => {
      const pick = button.dataset.pick;
      stateFilter.value = stateFilter.value === pick ? "" : pick;
      apply();
    });
  }
  window.addEventListener("hashchange", reveal);

  // ?state=S&batch=B&review=flagged&q=TEXT&sort=score opens the page filtered and sorted.
  const params = new URLSearchParams(location.search);
  if (params.get("state")) stateFilter.value = params.get("state");
  if (params.get("batch")) batchFilter.value = params.get("batch");
  if (params.get("q")) search.value = params.get("q");
  if (reviewFilter && params.get("review")) reviewFilter.value = params.get("review");
  if (params.get("sort")) sortBy.value = params.get("sort");

  apply();
  if (sortBy.value) sort();
  reveal();
  doc.documentElement.dataset.ready = "1";
})();
