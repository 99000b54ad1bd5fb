"""Facts of the course dataset that the project needs without ../shared.

The 30 real products (id, name, price, week-1 inventory) and the inventory the course set
each week for the products that changed (weeks 1-4). The generator reproduces the course
at scale 1 from these; `greenery replay` uses them for course data loaded without its
weekly file.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

# (product_id, name, price, inventory in week 1)
PRODUCTS: tuple[tuple[str, str, float, int], ...] = (
    ("4cda01b9-62e2-46c5-830f-b7f262a58fb1", "Pothos", 30.5, 40),
    ("689fb64e-a4a2-45c5-b9f2-480c2155624d", "Bamboo", 15.25, 56),
    ("55c6a062-5f4a-4a8b-a8e5-05ea5e6715a3", "Philodendron", 45.0, 51),
    ("be49171b-9f72-4fc9-bf7a-9a52e259836b", "Monstera", 50.75, 77),
    ("fb0e8be7-5ac4-4a76-a1fa-2cc4bf0b2d80", "String of pearls", 80.5, 58),
    ("b66a7143-c18a-43bb-b5dc-06bb5d1d3160", "ZZ Plant", 25.0, 89),
    ("e8b6528e-a830-4d03-a027-473b411c7f02", "Snake Plant", 25.5, 48),
    ("c7050c3b-a898-424d-8d98-ab0aaad7bef4", "Orchid", 50.75, 58),
    ("bb19d194-e1bd-4358-819e-cd1f1b401c0c", "Birds Nest Fern", 15.5, 49),
    ("b86ae24b-6f59-47e8-8adc-b17d88cbd367", "Calathea Makoyana", 40.25, 94),
    ("e5ee99b6-519f-4218-8b41-62f48f59f700", "Peace Lily", 60.5, 99),
    ("05df0866-1a66-41d8-9ed7-e2bbcddd6a3d", "Bird of Paradise", 65.0, 97),
    ("e706ab70-b396-4d30-a6b2-a1ccf3625b52", "Fiddle Leaf Fig", 85.5, 82),
    ("843b6553-dc6a-4fc4-bceb-02cd39af0168", "Ficus", 20.25, 44),
    ("5b50b820-1d0a-4231-9422-75e7f6b0cecf", "Pilea Peperomioides", 20.5, 85),
    ("58b575f2-2192-4a53-9d21-df9a0c14fc25", "Angel Wings Begonia", 95.0, 65),
    ("a88a23ef-679c-4743-b151-dc7722040d8c", "Jade Plant", 15.0, 94),
    ("74aeb414-e3dd-4e8a-beef-0fa45225214d", "Arrow Head", 30.95, 100),
    ("5ceddd13-cf00-481f-9285-8340ab95d06d", "Majesty Palm", 70.0, 74),
    ("64d39754-03e4-4fa0-b1ea-5f4293315f67", "Spider Plant", 15.0, 67),
    ("d3e228db-8ca5-42ad-bb0a-2148e876cc59", "Money Tree", 30.5, 59),
    ("c17e63f7-0d28-4a95-8248-b01ea354840e", "Cactus", 15.0, 81),
    ("35550082-a52d-4301-8f06-05b30f6f3616", "Devil's Ivy", 15.25, 88),
    ("6f3a3072-a24d-4d11-9cef-25b0b5f8a4af", "Alocasia Polly", 95.0, 83),
    ("80eda933-749d-4fc6-91d5-613d29eb126f", "Pink Anthurium", 60.95, 95),
    ("37e0062f-bd15-4c3e-b272-558a86d90598", "Dragon Tree", 50.25, 73),
    ("615695d3-8ffd-4850-bcf7-944cf6d3685b", "Aloe Vera", 15.0, 47),
    ("579f4cd0-1f45-49d2-af55-9ab2b72c3b35", "Rubber Plant", 20.5, 92),
    ("e18f33a6-b89a-4fbc-82ad-ccba5bb261cc", "Ponytail Palm", 80.75, 93),
    ("e2e78dfc-f25c-4fec-a002-8e280d61a2f2", "Boston Fern", 20.0, 77),
)

# Inventory in weeks 1, 2, 3, 4 of the six products that changed; the rest stayed put.
INVENTORY_BY_WEEK: dict[str, tuple[int, int, int, int]] = {
    "4cda01b9-62e2-46c5-830f-b7f262a58fb1": (40, 20, 0, 20),  # Pothos
    "55c6a062-5f4a-4a8b-a8e5-05ea5e6715a3": (51, 25, 15, 30),  # Philodendron
    "689fb64e-a4a2-45c5-b9f2-480c2155624d": (56, 56, 44, 23),  # Bamboo
    "b66a7143-c18a-43bb-b5dc-06bb5d1d3160": (89, 89, 53, 41),  # ZZ Plant
    "be49171b-9f72-4fc9-bf7a-9a52e259836b": (77, 64, 50, 31),  # Monstera
    "fb0e8be7-5ac4-4a76-a1fa-2cc4bf0b2d80": (58, 10, 0, 10),  # String of pearls
}

# When the course's weekly snapshots ran: week 1 the day after the last order.
WEEK_1_AT = datetime(2021, 2, 12)


def inventory_by_week(week_1_at: datetime = WEEK_1_AT) -> pd.DataFrame:
    """The course's weekly product states: week, recorded_at, product_id, name, price, inventory."""
    rows = []
    for week in range(1, 5):
        recorded_at = week_1_at + pd.Timedelta(weeks=week - 1)
        for product_id, name, price, inventory in PRODUCTS:
            weekly = INVENTORY_BY_WEEK.get(product_id)
            rows.append(
                (week, recorded_at, product_id, name, price, weekly[week - 1] if weekly else inventory)
            )
    frame = pd.DataFrame(rows, columns=["week", "recorded_at", "product_id", "name", "price", "inventory"])
    return frame.astype({"recorded_at": "datetime64[us]"})
