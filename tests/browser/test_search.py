"""The built site's search works offline (issue 16).

Sphinx's search (``searchtools.js`` with the index ``searchindex.js``, in furo's search page)
runs in the reader's browser on the files of the site: searching for what a tutorial teaches
must list that tutorial among the first results, with no request to any other host (the
shared :class:`~.conftest.SiteBrowser` blocks and records them).
"""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest

from .conftest import Visit

pytestmark = pytest.mark.browser

TOP = 5  # the expected page must be among this many first results
# a search term, and the page that teaches it
SEARCHES = [
    ("rollout", "auto_gallery/06_interpretability/03_rollout_and_flow.html"),
    ("induction heads", "auto_gallery/08_gpt/02_induction_heads.html"),
    ("beam search", "auto_gallery/03_transformer/05_decoding.html"),
    ("Nadaraya-Watson", "auto_gallery/01_foundations/02_soft_lookup.html"),
    ("BLEU", "auto_gallery/05_translation/02_transformer_translation.html"),
]
# Sphinx writes the summary once every result is listed.
DONE_JS = """() => {
  const summary = document.querySelector("#search-results .search-summary");
  return !!summary && /found|did not match/i.test(summary.textContent);
}"""
RESULTS_JS = """() => [...document.querySelectorAll("#search-results ul.search > li")]
  .map((li) => li.querySelector("a")?.href).filter(Boolean)"""


@pytest.mark.parametrize(("term", "expected"), SEARCHES, ids=[t for t, _ in SEARCHES])
def test_search_finds_the_page_that_teaches(site, site_dir, term: str, expected: str) -> None:
    """``search.html?q=TERM`` lists the page that teaches TERM among its first results."""
    assert (site_dir / expected).is_file(), f"the page {expected} is not in the site"
    where = f"search.html?q={quote_plus(term)}"
    visit = site._visit = Visit(where)  # record this load's requests (see SiteBrowser)
    response = site.page.goto(f"{site.base_url}/{where}", wait_until="load")
    visit.status = response.status if response else None
    site.page.wait_for_function(DONE_JS, timeout=30_000)
    pages = [site.site_path(url) for url in site.page.evaluate(RESULTS_JS)]
    pages = list(dict.fromkeys(p for p in pages if p))  # one entry per page, in order
    visit.assert_clean()
    assert pages, f"{where}: no result"
    assert expected in pages[:TOP], (
        f"{where}: {expected} is not among the first {TOP} results: {pages[:TOP]}"
    )
