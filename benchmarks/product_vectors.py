"""Does a product vector that weights in the product's text help text search? And do filters hold under
approximate search?

1. A catalogue of a FashionGen validation file's products: each row's image written as a PNG, and a
   products.csv (image, product_id, title, description, category, subcategory).
2. `famevil index --catalogue` of it once per --weights W (0: image vectors only; W > 0: each product's
   text vector is normalize((1 - W) mean(its views' image vectors) + W text("title. description"))).
3. Text -> product recall@1/5/10 with each product's description as its query: the product must come
   back among the first k products. Note the leakage: with W > 0 the product vector holds the very
   text it is queried with, which flatters text weighting; W = 0 sees the text only through the model.
4. Filters under FAISS (--approximate) on the W = 0 index: each query again, filtered to its product's
   category, exact against approximate: the share of exact's top 10 approximate finds, and whether every
   hit is of the category.

    python benchmarks/product_vectors.py --model runs/demo/seed-0/student \\
        --fashiongen runs/demo/raw/fashiongen/fashiongen_256_256_validation.h5 --work /tmp/product-vectors
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image

from famevil.data.fashiongen import FashionGenFile
from famevil.serving import SearchSession
from stages.index import index

CATALOGUE_HEADER = ["image", "product_id", "title", "description", "category", "subcategory"]
CUTS = (1, 5, 10)


def write_catalogue(fashiongen: Path, work: Path) -> Path:
    """The h5's rows as images/NNNNN.png and products.csv; returns the CSV."""
    (work / "images").mkdir(parents=True, exist_ok=True)
    catalogue = work / "products.csv"
    with FashionGenFile(fashiongen) as release, open(catalogue, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(CATALOGUE_HEADER)
        for number, row in enumerate(release.rows(range(len(release)))):
            name = f"{number:05d}.png"
            Image.fromarray(row.image).save(work / "images" / name)
            writer.writerow([name, row.product_id, row.title, row.description, row.category, row.subcategory])
    return catalogue


def queries(session: SearchSession) -> list[tuple[str, str, str]]:
    """(product_id, its description, its category) per product that has a description."""
    return [(p["product_id"], p["description"], p["category"]) for p in session.index.products if p["description"]]


def recalls(session: SearchSession, asked: list[tuple[str, str, str]]) -> dict[int, float]:
    found = {cut: 0 for cut in CUTS}
    for product, text, _ in asked:
        ranked = [hit.product_id for hit in session.search(text=text, top=max(CUTS)).hits]
        for cut in CUTS:
            found[cut] += product in ranked[:cut]
    return {cut: found[cut] / len(asked) for cut in CUTS}


def filtered_agreement(exact: SearchSession, approximate: SearchSession, asked: list[tuple[str, str, str]]) -> tuple[float, bool]:
    """The share of exact's filtered top 10 that approximate search finds too, and whether every hit of either is in the category."""
    shared, total, in_category = 0, 0, True
    for _, text, category in asked:
        wanted = exact.search(text=text, top=10, category=category).hits
        got = approximate.search(text=text, top=10, category=category).hits
        shared += len({h.product_id for h in wanted} & {h.product_id for h in got})
        total += len(wanted)
        in_category &= all(hit.category == category for hit in wanted + got)
    return shared / total, in_category


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model with cross-modal retrieval (the student, an XMR teacher)")
    parser.add_argument("--fashiongen", type=Path, required=True, help="a FashionGen h5 (the validation file)")
    parser.add_argument("--work", type=Path, required=True, help="a scratch folder: images, catalogue, indexes")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.3, 0.5])
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    catalogue = write_catalogue(args.fashiongen, args.work)
    print("| text weight | R@1 | R@5 | R@10 |\n|---|---|---|---|")
    unweighted = None
    for weight in args.weights:
        out = args.work / f"index-w{weight}"
        index(args.model, args.work / "images", out, catalogue=catalogue, text_weight=weight, batch_size=args.batch_size, overwrite=True)
        session = SearchSession(out)
        asked = queries(session)
        found = recalls(session, asked)
        print(f"| {weight} | " + " | ".join(f"{100 * found[cut]:.1f}" for cut in CUTS) + " |")
        unweighted = unweighted or (out if weight == 0 else None)
    print(f"({len(asked)} products, {len(session.index)} images; queries: each product's description)")
    if unweighted is not None:
        exact, approximate = SearchSession(unweighted), SearchSession(unweighted, backend="approximate")
        agreement, in_category = filtered_agreement(exact, approximate, queries(exact))
        print(f"filtered by category, approximate vs exact: {100 * agreement:.1f}% of exact's top 10 found; every hit in its category: {in_category}")


if __name__ == "__main__":
    main()
