"""Specific causes of death (as EAVA, InSilicoVA and InterVA name them) -> the broad causes
calibrated, as vacalibration 2.1's `cause_map()` maps them (lower case).

conveyor carries this map rather than relying on the data directory's
`cause_map_specific_to_broad.csv` alone: the package keeps its map in code, not in its
published data, and the CSV converted from it lacks the infections (`sepsis (non-obstetric)`,
`meningitis and encephalitis`, EAVA's `sepsis`, `nnt`, `other infections`, …) — a third of
the child example's deaths. The CSV's rows are added to this map (data.py); a row naming a
cause of this map with another broad cause is refused as malformed data.
"""

from __future__ import annotations

# fmt: off
# The causes a neonate's and a child's map share, under different broad causes.
_INJURIES = (
    "accid drowning and submersion", "accid expos to smoke fire & flame", "accid fall",
    "accid poisoning & noxious subs", "assault", "exposure to force of nature", "intentional self-harm",
    "other and unspecified external cod", "other transport accident", "road traffic accident",
)
_OTHER = (
    "abortion-related death", "acute abdomen", "acute cardiac disease", "anaemia of pregnancy", "asthma",
    "breast neoplasms", "chronic obstructive pulmonary dis", "contact with venomous plant/animal",
    "diabetes mellitus", "digestive neoplasms", "ectopic pregnancy", "epilepsy", "fresh stillbirth",
    "liver cirrhosis", "macerated stillbirth", "obstetric haemorrhage", "obstructed labour", "oral neoplasms",
    "other and unspecified cardiac dis", "other and unspecified maternal cod", "other and unspecified ncd",
    "other and unspecified neonatal cod", "other and unspecified neoplasms", "pregnancy-induced hypertension",
    "renal failure", "reproductive neoplasms mf", "respiratory neoplasms", "ruptured uterus", "severe anaemia",
    "sickle cell with crisis", "stroke",
)
_INFECTIONS = (
    "dengue fever", "haemorrhagic fever (non-dengue)", "measles", "meningitis and encephalitis",
    "other and unspecified infect dis", "pertussis", "pulmonary tuberculosis", "sepsis (non-obstetric)", "tetanus",
)

_BROAD: dict[str, dict[str, tuple[str, ...]]] = {
    "neonate": {
        "congenital_malformation": ("congenital malformation", "malformation"),
        "pneumonia": ("neonatal pneumonia", "acute resp infect incl pneumonia", "pneumonia"),
        "sepsis_meningitis_inf": (
            "neonatal sepsis", "pregnancy-related sepsis", *_INFECTIONS, "diarrhoeal diseases", "diarrhea",
            "hiv/aids related death", "malaria", "sepsis", "meningitis", "nnt",
        ),
        "ipre": ("birth asphyxia", "intrapartum"),
        # a newborn's injury, malnutrition or maternal cause is "other"
        "other": (*_INJURIES, *_OTHER, "severe malnutrition", "other"),
        "prematurity": ("prematurity", "preterm"),
    },
    "child": {
        "malaria": ("malaria",),
        "pneumonia": ("acute resp infect incl pneumonia", "neonatal pneumonia", "pneumonia"),
        "diarrhea": ("diarrhoeal diseases", "diarrhea/dysentery"),
        "severe_malnutrition": ("severe malnutrition", "malnutrition"),
        "hiv": ("hiv/aids related death", "aids"),
        "injury": (*_INJURIES, "injury"),
        "other": _OTHER,
        "other_infections": (
            *_INFECTIONS, "neonatal sepsis", "pregnancy-related sepsis", "meningitis/encephalitis", "other infections",
        ),
        "nn_causes": (
            "congenital malformation", "birth asphyxia", "prematurity", "malformation", "intrapartum", "preterm",
        ),
    },
}
# fmt: on

# age group -> specific cause (lower case) -> broad cause
PACKAGE_MAP: dict[str, dict[str, str]] = {
    age: {specific: broad for broad, specifics in groups.items() for specific in specifics}
    for age, groups in _BROAD.items()
}
