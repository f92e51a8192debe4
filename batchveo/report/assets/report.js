// The morning report's script, inlined into the page by batchveo.report.page.
//
// The page is complete without it (server-rendered cards, every video also a link):
// the script only filters, searches, sorts and lazy-loads. It reads everything it
// needs from the page itself: the cards' data attributes, and the order of the states
// for "sort by state" from the grid's data-state-order (written by the page from its
// own state order, so the two cannot drift).
(function () {
  "use strict";
  const doc = document;
  const grid = doc.getElementById("grid");
  const stateFilter = doc.getElementById("f-state");
  const batchFilter = doc.getElementById("f-batch");
  const search = doc.getElementById("f-q");
  const sortBy = doc.getElementById("f-sort");
  const shown = doc.getElementById("shown");

  // The grid's data-state-order lists the states, most urgent first: each gets its rank.
  const rank = {};
  (grid.dataset.stateOrder || "").split(" ").forEach((state, i) => {
    rank[state] = i;
  });

  // One entry per card, in the order the page was written.
  const items = Array.from(grid.children, (card, i) => {
    const prompt = card.querySelector(".prompt");
    return {
      el: card,
      i: i,
      id: card.querySelector(".jid").textContent,
      state: card.dataset.state,
      batch: card.dataset.batch,
      gen: card.dataset.gen === "" ? -1 : Number(card.dataset.gen),
      text: (prompt ? prompt.textContent : "").toLowerCase(),
    };
  });

  // Show the cards that match every filter; a search matches a prompt, or an id exactly.
  function apply() {
    const state = stateFilter.value;
    const batch = batchFilter.value;
    const q = search.value.trim().toLowerCase();
    let n = 0;
    for (const x of items) {
      const ok =
        (!state || x.state === state) &&
        (!batch || x.batch === batch) &&
        (!q || x.text.indexOf(q) >= 0 || x.id.toLowerCase() === q);
      x.el.hidden = !ok;
      if (ok) n++;
    }
    shown.textContent = n + " of " + items.length + " shown";
    doc.documentElement.dataset.shown = n;
  }

  const byLoadOrder = (a, b) => a.i - b.i;
  const comparators = {
    id: (a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }),
    state: (a, b) => rank[a.state] - rank[b.state] || a.i - b.i,
    gen: (a, b) => b.gen - a.gen || a.i - b.i, // slowest generation first
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
      apply();
      target.scrollIntoView();
    }
  }

  stateFilter.addEventListener("change", apply);
  batchFilter.addEventListener("change", apply);
  search.addEventListener("input", apply);
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

  // ?state=S&batch=B&q=TEXT&sort=gen opens the page filtered and sorted.
  const params = new URLSearchParams(location.search);
  if (params.get("state")) stateFilter.value = params.get("state");
  if (params.get("batch")) batchFilter.value = params.get("batch");
  if (params.get("q")) search.value = params.get("q");
  if (params.get("sort")) sortBy.value = params.get("sort");

  apply();
  if (sortBy.value) sort();
  reveal();
  doc.documentElement.dataset.ready = "1";
})();
