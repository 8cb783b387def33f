"""The embedded default dataset: a deterministic synthetic industrial & scientific store.

Why synthetic: the whole method must run offline in minutes on a laptop, and its
data must have the structure the method exploits. Here the next item is genuinely
predictable from item semantics:
  - complements: after a 3D printer come filament and nozzles; after epoxy, mixing cups;
  - series / upgrades: product lines have generations (Mk1 -> Mk2) and users upgrade;
  - consumables: gloves, filament, solder are re-bought;
  - latent intents: each user pursues one or two projects (3D printing, chemistry lab,
    woodworking, electronics) that decide which categories they shop in;
  - brand loyalty: users prefer one brand.
Titles and descriptions state type, category, brand, line, generation and what the item
pairs with, so text embeddings (and hence SIDs) carry the signal. A popularity baseline
is clearly beaten by anything that reads the history (see tests).

Same seed -> identical data. The result goes through the same protocol as real data
(5-core, history <= 10, global chronological 8:1:1 split).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sidjax.data.protocol import Interaction, build_dataset
from sidjax.data.types import Dataset, Item

# (category, type, attribute options, complement types, consumable)
PRODUCT_TYPES = (
    ("3D Printing", "3D Printer", ("FDM", "Resin", "CoreXY"),
     ("PLA Filament", "Nozzle Kit", "Build Plate"), False),
    ("3D Printing", "PLA Filament", ("Black", "White", "Silk Red"), ("Filament Dryer",), True),
    ("3D Printing", "Nozzle Kit", ("0.2 mm", "0.4 mm", "0.6 mm"), ("PLA Filament",), False),
    ("3D Printing", "Build Plate", ("PEI", "Glass"), ("PLA Filament",), False),
    ("3D Printing", "Filament Dryer", ("Single Spool", "Dual Spool"), ("PLA Filament",), False),
    ("Lab Safety", "Nitrile Gloves", ("Small", "Medium", "Large"),
     ("Safety Goggles", "Lab Coat"), True),
    ("Lab Safety", "Safety Goggles", ("Anti-Fog", "Clear"), ("Nitrile Gloves",), False),
    ("Lab Safety", "Lab Coat", ("Medium", "Large"), ("Safety Goggles",), False),
    ("Lab Glassware", "Erlenmeyer Flask", ("250 mL", "500 mL", "1000 mL"),
     ("Lab Stand Clamp", "Magnetic Stirrer"), False),
    ("Lab Glassware", "Beaker Set", ("5-Piece", "10-Piece"), ("Magnetic Stirrer",), False),
    ("Lab Glassware", "Magnetic Stirrer", ("Hot Plate", "Compact"), ("Stir Bar Set",), False),
    ("Lab Glassware", "Stir Bar Set", ("PTFE", "Octagonal"), ("Erlenmeyer Flask",), True),
    ("Lab Glassware", "Lab Stand Clamp", ("3-Prong", "Burette"), ("Erlenmeyer Flask",), False),
    ("Adhesives", "Super Glue", ("Gel", "Liquid"), ("Bar Clamp",), True),
    ("Adhesives", "Epoxy", ("5-Minute", "30-Minute"), ("Mixing Cups",), True),
    ("Adhesives", "Silicone Sealant", ("Clear", "White"), ("Caulk Gun",), True),
    ("Adhesives", "Caulk Gun", ("Manual", "Dripless"), ("Silicone Sealant",), False),
    ("Adhesives", "Mixing Cups", ("100-Pack", "250-Pack"), ("Epoxy",), True),
    ("Woodworking", "Brad Nails", ("1-Inch", "1-1/4-Inch"), ("Brad Nailer",), True),
    ("Woodworking", "Brad Nailer", ("Pneumatic", "Cordless"), ("Brad Nails",), False),
    ("Woodworking", "Bar Clamp", ("12-Inch", "24-Inch"), ("Super Glue",), False),
    ("Woodworking", "Digital Caliper", ("6-Inch", "8-Inch"), ("Angle Gauge",), False),
    ("Woodworking", "Angle Gauge", ("Digital", "Magnetic"), ("Digital Caliper",), False),
    ("Electronics", "Soldering Station", ("60 W", "80 W"), ("Solder Wire", "Helping Hands"),
     False),
    ("Electronics", "Solder Wire", ("Lead-Free", "Rosin Core"), ("Flux Pen",), True),
    ("Electronics", "Flux Pen", ("No-Clean", "Rosin"), ("Solder Wire",), True),
    ("Electronics", "Digital Multimeter", ("Auto-Ranging", "True RMS"), ("Test Leads",), False),
    ("Electronics", "Test Leads", ("Alligator", "Probe"), ("Digital Multimeter",), False),
    ("Electronics", "Helping Hands", ("4-Arm", "Magnifier"), ("Soldering Station",), False),
)

PROJECTS = {
    "3D printing": ("3D Printing", "Adhesives"),
    "chemistry lab": ("Lab Glassware", "Lab Safety"),
    "woodworking": ("Woodworking", "Adhesives"),
    "electronics": ("Electronics", "Lab Safety", "Woodworking"),
}
BRANDS = ("Kestrel", "Northwind", "Vantor", "Alder & Finch", "Corvid Labs", "Tessera")
LINES = ("Pro", "Flex", "Prime", "Core", "Max")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    num_users: int = 3000
    lines_per_type: int = 3
    max_generations: int = 3
    mean_sequence_length: float = 9.0
    p_complement: float = 0.45
    p_upgrade: float = 0.15
    p_repurchase: float = 0.12
    seed: int = 0
    name: str = "Synthetic_Store"


def _make_items(rng: np.random.Generator, cfg: SyntheticConfig) -> list[dict]:
    items = []
    for category, kind, attrs, complements, consumable in PRODUCT_TYPES:
        brands = rng.choice(len(BRANDS), size=cfg.lines_per_type, replace=False)
        for line_no, brand_index in enumerate(brands):
            brand = BRANDS[brand_index]
            line = f"{LINES[(line_no + len(items)) % len(LINES)]} {100 * (line_no + 1)}"
            generations = int(rng.integers(1, cfg.max_generations + 1))
            n_attrs = int(rng.integers(1, len(attrs) + 1))
            for gen in range(1, generations + 1):
                for attr in rng.choice(attrs, size=n_attrs, replace=False):
                    items.append({"category": category, "type": kind, "attribute": str(attr),
                                  "brand": brand, "line": line, "generation": gen,
                                  "complements": complements, "consumable": consumable})
    for i, it in enumerate(items):
        it["key"] = f"item_{i:05d}"
        pack = " (Refill Pack)" if it["consumable"] else ""
        it["title"] = (f"{it['brand']} {it['line']} {it['type']} {it['attribute']} "
                       f"Mk{it['generation']}{pack}")
        it["description"] = (
            f"{it['type']} for {it['category'].lower()}, {it['attribute'].lower()} version. "
            f"Generation {it['generation']} of the {it['brand']} {it['line']} line. "
            f"Pairs well with: {', '.join(it['complements']).lower()}."
            + (" A consumable that customers re-order." if it["consumable"] else ""))
    return items


def generate(cfg: SyntheticConfig = SyntheticConfig()) -> tuple[Dataset, dict]:
    """Builds the synthetic dataset (deterministic in cfg). Returns (dataset, counts)."""
    rng = np.random.default_rng(cfg.seed)
    items = _make_items(rng, cfg)
    by_type: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_type.setdefault(it["type"], []).append(i)
    # Zipf-like popularity inside each type.
    popularity = np.empty(len(items))
    for ids in by_type.values():
        order = rng.permutation(len(ids))
        popularity[ids] = 1.0 / (1.0 + order) ** 0.8
    next_gen = {}
    for i, it in enumerate(items):
        for j, other in enumerate(items):
            if (other["line"], other["brand"], other["type"], other["attribute"]) == (
                    it["line"], it["brand"], it["type"], it["attribute"]) and other[
                    "generation"] == it["generation"] + 1:
                next_gen[i] = j

    def pick(types, brand):
        candidates = [i for t in types for i in by_type[t]]
        w = popularity[candidates] * np.array(
            [3.0 if items[i]["brand"] == brand else 1.0 for i in candidates])
        return int(candidates[rng.choice(len(candidates), p=w / w.sum())])

    interactions = []
    projects = list(PROJECTS)
    for u in range(cfg.num_users):
        chosen = rng.choice(len(projects), size=int(rng.integers(1, 3)), replace=False)
        categories = {c for p in chosen for c in PROJECTS[projects[p]]}
        types = [t[1] for t in PRODUCT_TYPES if t[0] in categories]
        brand = BRANDS[int(rng.integers(len(BRANDS)))]
        length = 2 + int(rng.geometric(1.0 / (cfg.mean_sequence_length - 1)))
        t = int(rng.integers(0, 400 * 86400))
        seq = [pick(types, brand)]
        while len(seq) < length:
            last, r = seq[-1], rng.random()
            if r < cfg.p_complement:
                seq.append(pick(items[last]["complements"], brand))
            elif r < cfg.p_complement + cfg.p_upgrade and last in next_gen:
                seq.append(next_gen[last])
            elif r < cfg.p_complement + cfg.p_upgrade + cfg.p_repurchase:
                consumables = [i for i in seq if items[i]["consumable"]]
                seq.append(int(rng.choice(consumables)) if consumables else pick(types, brand))
            else:
                seq.append(pick(types, brand))
        for item in seq:
            t += int(rng.exponential(6 * 86400)) + 1
            interactions.append(Interaction(f"U{u:05d}", items[item]["key"], t))

    meta = {it["key"]: it for it in items}

    def make_item(item_id: int, key: str) -> Item:
        it = meta[key]
        return Item(id=item_id, title=it["title"], description=it["description"],
                    brand=it["brand"],
                    categories=f"Industrial & Scientific > {it['category']} > {it['type']}",
                    attributes={k: it[k] for k in ("category", "type", "attribute", "line",
                                                   "generation", "consumable")}
                    | {"complements": list(it["complements"]), "source_id": key})

    return build_dataset(cfg.name, interactions, make_item, 5, 5, 10,
                         "industrial and scientific items")
