"""An offline BillSum-like corpus (its tokenizer is trained by ``summprune.tokenizer``).

Used by the smoke run (a tiny T5 fine-tuned for a minute or two on CPU has to learn something
measurable) and by the tests, so that nothing needs the network.

Documents look like US bills ("SECTION 1. SHORT TITLE. This Act may be cited as the ``... Act
of 2019''. SEC. 2. ... Section 312 of the Clean Air Act (42 U.S.C. 7412) is amended--..."), and
the summary is a deterministic function of a few *primary* facts in the text, mostly copied
verbatim, surrounded by distractor sections that the summary ignores:

``<Title> Act of <year> - Amends the <Act> to <purpose>. Requires the <Agency> to <action>
within <N> days. [Authorizes appropriations for fiscal years <y1> through <y2>.]``

* ``difficulty="easy"``: 150-350 words (~340 BPE tokens, at most ~460), ~330 alphabetic word
  types; the primary content sits in the first ~200 tokens (``max_source_length=256`` keeps it
  in ~97% of documents, 512 keeps whole documents). Summaries 37-58 words, <= 64 tokens.
* ``difficulty="hard"``: 400-900 words (~880 tokens, at most ~1200; all summarised content lies
  within the first ~770), ~490 word types, sections shuffled, 1-2 primary
  amendments (flagged by a "(a) Purpose.--" subsection) among technical and conforming
  amendments of other Acts that look alike, "shall" requirements among "should" sense-of-Congress
  sections, 2-4 summary sentences.

* ``difficulty="copy"``: a corpus whose summaries can only be written by reading the bill. Its
  names (short title, amended Acts, places, agencies, offices, streets, honorees) are drawn per
  bill from 1,000 made-up words, and its numbers and years per bill, and appear in the summary
  only because they appear in the text. A bill has 2-3 of six kinds of provision (amend an Act,
  require an action by a deadline, authorize appropriations, establish an office, designate a post
  office, convey land), each with its own summary sentence, among 1-2 distractors (a conforming
  amendment of another Act, a sense-of-Congress section naming another agency and deadline,
  findings) that the summary ignores. A perfect summarizer given another bill's text scores ~0.3
  on the course metric against this bill's summary (the template words), one given its own text
  1.0. 100-250 words (~205 BPE tokens with a 4,000-token vocabulary, at most ~345: read whole at
  ``max_source_length=384``); summaries ~48 tokens.

Every document is generated from its own ``random.Random`` seeded from (seed, difficulty, index),
so ``make_corpus`` is deterministic, uses no global random state, and ``make_corpus(n)`` is a
prefix of ``make_corpus(m)`` for ``n < m``.
"""

from __future__ import annotations

import random

DIFFICULTIES = ("easy", "hard", "copy")

# --------------------------------------------------------------------------------------------
# vocabulary. The first part of every list is the 'easy' vocabulary; 'hard' uses all of it.

_TITLE_A = [
    "Rural", "Veterans", "Small Business", "Clean Water", "Student", "Family", "Community",
    "Energy", "Public Safety", "Tribal", "Coastal", "Affordable Housing", "Child Care",
    "Wildfire", "Broadband", "Farm", "Transit", "Workforce", "Patient", "Senior",
    # hard only
    "American", "Border", "Disaster", "Maternal Health", "Fisheries", "Manufacturing",
    "Apprenticeship", "Drinking Water", "Forest", "Mental Health", "Opioid", "Election",
    "Cybersecurity", "Infrastructure", "Nutrition", "Flood",
]
_TITLE_B = [
    "Access", "Protection", "Relief", "Improvement", "Fairness", "Opportunity", "Security",
    "Investment", "Modernization", "Accountability", "Recovery", "Innovation",
    # hard only
    "Resilience", "Transparency", "Empowerment", "Enhancement", "Integrity", "Readiness",
    "Support", "Partnership", "Preservation", "Expansion",
]
_N_EASY_TITLE_A, _N_EASY_TITLE_B = 20, 12

# (name, U.S.C. title, first section) of the Acts that bills amend.
_ACTS = [
    ("Clean Air Act", 42, 7401), ("Social Security Act", 42, 301),
    ("Public Health Service Act", 42, 201), ("Higher Education Act of 1965", 20, 1001),
    ("Small Business Act", 15, 631), ("Federal Water Pollution Control Act", 33, 1251),
    ("Food Security Act of 1985", 16, 3801), ("Housing Act of 1949", 42, 1441),
    ("Workforce Innovation and Opportunity Act", 29, 3101), ("Energy Policy Act of 2005", 42, 15801),
    ("Homeland Security Act of 2002", 6, 101), ("Safe Drinking Water Act", 42, 300),
    ("Fair Labor Standards Act of 1938", 29, 201), ("Communications Act of 1934", 47, 151),
    ("National Housing Act", 12, 1701), ("Rural Electrification Act of 1936", 7, 901),
    ("Older Americans Act of 1965", 42, 3001), ("Child Care and Development Block Grant Act of 1990", 42, 9857),
    # hard only
    ("Elementary and Secondary Education Act of 1965", 20, 6301), ("Clean Water Act", 33, 1251),
    ("Farm Security and Rural Investment Act of 2002", 7, 7901), ("Endangered Species Act of 1973", 16, 1531),
    ("Indian Self-Determination and Education Assistance Act", 25, 5301),
    ("Robert T. Stafford Disaster Relief and Emergency Assistance Act", 42, 5121),
    ("Federal Food, Drug, and Cosmetic Act", 21, 301), ("Magnuson-Stevens Fishery Conservation and Management Act", 16, 1801),
    ("Omnibus Crime Control and Safe Streets Act of 1968", 34, 10101), ("Head Start Act", 42, 9831),
    ("Individuals with Disabilities Education Act", 20, 1400), ("Federal Power Act", 16, 791),
    ("National Flood Insurance Act of 1968", 42, 4001), ("Help America Vote Act of 2002", 52, 20901),
    ("Surface Transportation Assistance Act of 1982", 49, 5301), ("Water Resources Development Act of 1986", 33, 2201),
]
_N_EASY_ACTS = 18

_AGENCIES = [
    "Secretary of Agriculture", "Secretary of Energy", "Secretary of Education", "Secretary of Labor",
    "Secretary of Health and Human Services", "Secretary of Veterans Affairs", "Secretary of Transportation",
    "Secretary of Housing and Urban Development", "Administrator of the Environmental Protection Agency",
    "Administrator of the Small Business Administration", "Attorney General",
    "Comptroller General of the United States", "Secretary of the Interior", "Secretary of Homeland Security",
    # hard only
    "Secretary of Commerce", "Secretary of the Treasury", "Secretary of Defense",
    "Federal Communications Commission", "Administrator of the Federal Emergency Management Agency",
    "Director of the Office of Management and Budget", "Commissioner of Social Security",
    "Director of the National Institutes of Health", "Chief of the Forest Service",
    "Administrator of the National Oceanic and Atmospheric Administration",
]
_N_EASY_AGENCIES = 14

_GROUPS = [
    "rural communities", "small businesses", "veterans", "low-income families", "tribal governments",
    "first responders", "college students", "farmers and ranchers", "public schools", "seniors",
    "people with disabilities", "coastal States",
    # hard only
    "homeless youth", "military families", "community health centers", "Indian tribes",
    "units of local government", "nonprofit organizations", "pregnant women", "small farms",
    "historically black colleges and universities", "fishing communities", "disadvantaged workers",
    "minority-owned businesses", "public housing agencies", "State educational agencies",
]
_N_EASY_GROUPS = 12

_PROGRAMS = [
    "grant program", "pilot program", "loan program", "training program", "demonstration program",
    "technical assistance program",
    # hard only
    "loan guarantee program", "competitive grant program", "research program", "outreach program",
    "revolving fund", "matching grant program",
]
_N_EASY_PROGRAMS = 6

_BENEFITS = [
    "housing assistance", "job training services", "broadband service", "health care benefits",
    "student loan forgiveness", "disaster assistance", "child care assistance", "clean drinking water",
    # hard only
    "mental health services", "nutrition assistance", "legal services", "transportation services",
    "energy efficiency upgrades", "crop insurance", "substance use disorder treatment",
    "emergency medical services", "apprenticeship opportunities", "flood insurance coverage",
]
_N_EASY_BENEFITS = 8

_ENTITIES = [
    "a State, a unit of local government, or an Indian tribe", "a nonprofit organization",
    "an institution of higher education", "a public housing agency", "a local educational agency",
    "a consortium of the entities described in this paragraph",
]

_DAYS = [90, 180, 270, 365]
_DAYS_HARD = [30, 60, 90, 120, 180, 270, 365, 540, 730]

# Purpose phrases ("... is amended to <purpose>"); {p}=program, {g}=group, {b}=benefit.
_PURPOSES = [
    "establish a {p} for {g}",
    "expand eligibility for {b} to {g}",
    # hard only
    "extend the {p} for {g} through fiscal year {y}",
    "increase the Federal share of the cost of {b} for {g}",
    "prohibit the denial of {b} to {g}",
]
_N_EASY_PURPOSES = 2

# Actions the agency "shall" take; {t}=topic.
_ACTIONS = [
    "submit to Congress a report on {t}",
    "issue regulations to carry out the amendments made by this Act",
    "conduct a study on {t}",
    "establish an advisory committee on {t}",
    # hard only
    "publish guidance on {t}",
    "enter into an agreement with the National Academy of Sciences to study {t}",
    "develop a strategic plan for {t}",
]
_N_EASY_ACTIONS = 4

_TOPICS = [
    "the effectiveness of the program", "the cost of {b}",
    # hard only
    "access to {b} for {g}", "barriers to {b} for {g}",
]
_N_EASY_TOPICS = 2

_FACTS = [
    "{G} face significant barriers to {b}",
    "The {A} has not been updated since {y}",
    "According to the {O}, {n} percent of {g} lack access to {b}",
    "Access to {b} is critical to the economic security of {g}",
    "More than {n} percent of {g} live more than {m} miles from the nearest provider of {b}",
    "The {O} has found that demand for {b} exceeds available funding",
]

_HEADINGS = {
    0: "ESTABLISHMENT OF {P}",
    1: "EXPANSION OF ELIGIBILITY",
    2: "EXTENSION OF {P}",
    3: "FEDERAL SHARE",
    4: "PROHIBITION ON DENIAL OF {B}",
}
_ACTION_HEADINGS = ["REPORT", "REGULATIONS", "STUDY", "ADVISORY COMMITTEE", "GUIDANCE", "STUDY", "STRATEGIC PLAN"]

_SUBSECTION_HEADINGS = ["Eligibility", "Use of funds", "Priority", "Application", "Limitation", "Coordination"]


class _Vocab:
    def __init__(self, hard: bool):
        def pick(lst, n_easy):
            return lst if hard else lst[:n_easy]

        self.title_a = pick(_TITLE_A, _N_EASY_TITLE_A)
        self.title_b = pick(_TITLE_B, _N_EASY_TITLE_B)
        self.acts = pick(_ACTS, _N_EASY_ACTS)
        self.agencies = pick(_AGENCIES, _N_EASY_AGENCIES)
        self.groups = pick(_GROUPS, _N_EASY_GROUPS)
        self.programs = pick(_PROGRAMS, _N_EASY_PROGRAMS)
        self.benefits = pick(_BENEFITS, _N_EASY_BENEFITS)
        self.purposes = list(enumerate(pick(_PURPOSES, _N_EASY_PURPOSES)))
        self.actions = list(enumerate(pick(_ACTIONS, _N_EASY_ACTIONS)))
        self.topics = pick(_TOPICS, _N_EASY_TOPICS)
        self.days = _DAYS_HARD if hard else _DAYS


_VOCABS = {"easy": _Vocab(False), "hard": _Vocab(True)}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


class _Doc:
    """State for one generated bill: its rng, vocabulary and sections."""

    def __init__(self, rng: random.Random, vocab: _Vocab, hard: bool):
        self.rng = rng
        self.v = vocab
        self.hard = hard
        self.year = rng.randint(2009, 2024)

    # -- small phrase makers ---------------------------------------------------------------
    def title(self) -> str:
        r, v = self.rng, self.v
        a, b = r.choice(v.title_a), r.choice(v.title_b)
        u = r.random()
        if u < 0.25:
            b2 = r.choice([x for x in v.title_b if x != b])
            return f"{a} {b} and {b2}"
        if self.hard and u < 0.4:
            return f"{r.choice(['Protecting', 'Supporting', 'Strengthening', 'Investing in'])} {a} {b}"
        return f"{a} {b}"

    def cite(self, act) -> str:
        name, usc_title, first = act
        return f"{usc_title} U.S.C. {first + self.rng.randint(0, 60)}"

    def purpose(self) -> tuple[int, str]:
        r, v = self.rng, self.v
        k, tpl = r.choice(v.purposes)
        return k, tpl.format(p=r.choice(v.programs), g=r.choice(v.groups), b=r.choice(v.benefits),
                             y=self.year + r.randint(3, 8))

    def topic(self) -> str:
        r, v = self.rng, self.v
        return r.choice(v.topics).format(b=r.choice(v.benefits), g=r.choice(v.groups))

    def action(self) -> tuple[int, str]:
        k, tpl = self.rng.choice(self.v.actions)
        return k, tpl.format(t=self.topic())

    def fact(self, exclude_act: str) -> str:
        r, v = self.rng, self.v
        other_acts = [a[0] for a in v.acts if a[0] != exclude_act]
        g, b = r.choice(v.groups), r.choice(v.benefits)
        return r.choice(_FACTS).format(G=_cap(g), g=g, b=b, B=_cap(b), A=r.choice(other_acts),
                                       O=r.choice(v.agencies), y=r.randint(1970, self.year - 2),
                                       n=r.randint(5, 60), m=r.randint(10, 90))

    # -- sections (body text only; numbering happens in render) -------------------------------
    def amendment_section(self, act, purpose_k: int, purpose: str) -> tuple[str, str]:
        r = self.rng
        heading = _HEADINGS[purpose_k].format(P="PROGRAM", B="BENEFITS")
        if purpose_k in (0, 2):
            heading = heading.replace("PROGRAM", r.choice(["PROGRAM", "GRANTS", "ASSISTANCE"]))
        sec = r.randint(2, 60) * 10 + r.choice([0, 1, 2, 3, 5])
        sub = r.choice("abcdefgh")
        new = chr(ord(sub) + r.randint(1, 5))
        n1 = r.choice([10, 15, 20, 25, 50])
        n2 = n1 + r.choice([5, 10, 25])
        sub_head = r.choice(_SUBSECTION_HEADINGS)
        entity = r.choice(_ENTITIES)
        body = (
            f"(a) Purpose.--The purpose of this section is to {purpose}.\n"
            f"    (b) Amendment.--Section {sec} of the {act[0]} ({self.cite(act)}) is amended--\n"
            f"        (1) in subsection ({sub}), by striking ``{n1} percent'' and inserting ``{n2} percent''; and\n"
            f"        (2) by adding at the end the following:\n"
            f"    ``({new}) {sub_head}.--An eligible entity shall be {entity}.''."
        )
        return heading, body

    def conforming_section(self, act) -> tuple[str, str]:
        r = self.rng
        sec = r.randint(2, 60) * 10 + r.choice([0, 1, 2, 3, 5])
        old, new = r.sample(["Secretary", "Administrator", "Director", "Commissioner"], 2)
        body = (
            f"Section {sec} of the {act[0]} ({self.cite(act)}) is amended by striking ``{old}'' "
            f"each place it appears and inserting ``{new}''."
        )
        return "TECHNICAL AND CONFORMING AMENDMENTS", body

    def requirement_section(self, agency: str, days: int, action_k: int, action: str) -> tuple[str, str]:
        body = (f"Not later than {days} days after the date of the enactment of this Act, the "
                f"{agency} shall {action}.")
        return _ACTION_HEADINGS[action_k], body

    def sense_section(self) -> tuple[str, str]:
        r = self.rng
        _, act = self.action()
        return "SENSE OF CONGRESS", f"It is the sense of Congress that the {r.choice(self.v.agencies)} should {act}."

    def appropriations_section(self, y1: int, y2: int) -> tuple[str, str]:
        amt = self.rng.choice([5, 10, 20, 25, 50, 75, 100, 150, 250])
        return ("AUTHORIZATION OF APPROPRIATIONS",
                f"There are authorized to be appropriated to carry out this Act ${amt},000,000 for "
                f"each of fiscal years {y1} through {y2}.")

    def findings_section(self, n: int, main_act: str) -> tuple[str, str]:
        items = "\n".join(f"        ({i + 1}) {self.fact(main_act)}." for i in range(n))
        return "FINDINGS", f"Congress finds the following:\n{items}"

    def definitions_section(self, n: int, agency: str) -> tuple[str, str]:
        r = self.rng
        defs = [("Eligible entity", f"means {r.choice(_ENTITIES)}"),
                ("Secretary", f"means the {agency}"),
                ("State", "means each of the several States, the District of Columbia, and each "
                          "territory of the United States"),
                ("Covered individual", f"means an individual served by {r.choice(self.v.groups)}"),
                ("Program", "means the program established under this Act")]
        chosen = defs[:1] + r.sample(defs[1:], max(0, min(n, len(defs)) - 1))
        items = "\n".join(f"        ({i + 1}) {t}.--The term ``{t if t in ('State', 'Secretary') else t.lower()}'' {d}."
                          for i, (t, d) in enumerate(chosen))
        return "DEFINITIONS", f"In this Act:\n{items}"

    def effective_section(self) -> tuple[str, str]:
        d = self.rng.choice([30, 90, 180, 365])
        return ("EFFECTIVE DATE", f"The amendments made by this Act shall take effect on the date that is {d} "
                                  "days after the date of the enactment of this Act.")

    def construction_section(self, main_act: str) -> tuple[str, str]:
        r = self.rng
        other = r.choice([a[0] for a in self.v.acts if a[0] != main_act])
        what = r.choice([f"limit the authority of the {r.choice(self.v.agencies)}",
                         f"affect any right or remedy under the {other}",
                         f"supersede any provision of the {other}"])
        return "RULE OF CONSTRUCTION", f"Nothing in this Act shall be construed to {what}."


def _render(short_title: str, sections: list[tuple[str, str]]) -> str:
    parts = [f"SECTION 1. SHORT TITLE.\n\n    This Act may be cited as the ``{short_title}''."]
    for i, (head, body) in enumerate(sections, start=2):
        parts.append(f"SEC. {i}. {head}.\n\n    {body}")
    return "\n\n".join(parts)


def _words(s: str) -> int:
    return len(s.split())


def _make_easy(rng: random.Random, v: _Vocab) -> tuple[str, str, str]:
    d = _Doc(rng, v, hard=False)
    title = f"{d.title()} Act of {d.year}"
    act = rng.choice(v.acts)
    agency = rng.choice(v.agencies)
    pk, purpose = d.purpose()
    ak, action = d.action()
    days = rng.choice(v.days)
    approp = rng.random() < 0.5
    y1 = d.year + 1
    y2 = y1 + rng.choice([2, 3, 4])

    head: list[tuple[str, str]] = []
    if rng.random() < 0.3:
        head.append(d.findings_section(2, act[0]))
    core = [d.amendment_section(act, pk, purpose), d.requirement_section(agency, days, ak, action)]
    if approp:
        core.append(d.appropriations_section(y1, y2))
    tail_pool = [d.findings_section(rng.randint(2, 4), act[0]), d.definitions_section(rng.randint(2, 4), agency),
                 d.effective_section(), d.construction_section(act[0])]
    rng.shuffle(tail_pool)
    target = rng.randint(150, 350)
    sections = head + core
    for s in tail_pool:
        if _words(_render(title, sections)) >= target:
            break
        if s[0] == "FINDINGS" and head:
            continue
        sections.append(s)

    summary = (f"{title} - Amends the {act[0]} to {purpose}. Requires the {agency} to {action} "
               f"within {days} days.")
    if approp:
        summary += f" Authorizes appropriations for fiscal years {y1} through {y2}."
    return title, _render(title, sections), summary


def _make_hard(rng: random.Random, v: _Vocab) -> tuple[str, str, str]:
    d = _Doc(rng, v, hard=True)
    title = f"{d.title()} Act of {d.year}"
    n_amend = rng.choice([1, 2])
    n_req = rng.choice([1, 2])
    approp = (n_amend + n_req) < 4 and rng.random() < 0.6
    acts = rng.sample(v.acts, n_amend + rng.randint(1, 3))
    primary, others = acts[:n_amend], acts[n_amend:]
    y1 = d.year + 1
    y2 = y1 + rng.choice([2, 3, 4, 5])

    # ("kind", (heading, body), summary sentence or None); primaries keep their relative order.
    amend = []
    for act in primary:
        pk, purpose = d.purpose()
        amend.append(("amend", d.amendment_section(act, pk, purpose), f"Amends the {act[0]} to {purpose}."))
    reqs = []
    req_agencies = rng.sample(v.agencies, n_req)
    for agency in req_agencies:
        ak, action = d.action()
        days = rng.choice(v.days)
        reqs.append(("req", d.requirement_section(agency, days, ak, action),
                     f"Requires the {agency} to {action} within {days} days."))
    distract = [("x", d.conforming_section(a), None) for a in others]
    distract += [("x", d.sense_section(), None) for _ in range(rng.randint(1, 2))]
    main_agency = req_agencies[0]
    optional = [("x", d.findings_section(rng.randint(3, 6), primary[0][0]), None),
                ("x", d.definitions_section(rng.randint(3, 5), main_agency), None),
                ("x", d.effective_section(), None),
                ("x", d.construction_section(primary[0][0]), None),
                ("x", d.findings_section(rng.randint(2, 4), primary[0][0]), None),
                ("x", d.sense_section(), None)]
    rng.shuffle(optional)

    # Body order: findings/definitions usually first, then a shuffle of the rest.
    middle = amend + reqs + distract
    rng.shuffle(middle)
    # keep primaries in their generated order relative to each other (summary order = text order)
    a_iter, r_iter = iter(amend), iter(reqs)
    middle = [next(a_iter) if k == "amend" else next(r_iter) if k == "req" else (k, s, t) for k, s, t in middle]
    if approp:
        middle.append(("approp", d.appropriations_section(y1, y2),
                       f"Authorizes appropriations for fiscal years {y1} through {y2}."))
    target = rng.randint(400, 900)
    front, back = [], []
    for item in optional:
        if _words(_render(title, [s for _, s, _ in front + middle + back])) >= target:
            break
        (front if item[1][0] in ("FINDINGS", "DEFINITIONS") and not any(f[1][0] == item[1][0] for f in front)
         else back).append(item)
    extra = 0
    while _words(_render(title, [s for _, s, _ in front + middle + back])) < target and extra < 6:
        other = rng.choice([a for a in v.acts if a not in primary])
        back.insert(rng.randint(0, len(back)), ("x", d.conforming_section(other), None))
        extra += 1
    order = front + middle + back
    text = _render(title, [s for _, s, _ in order])
    sentences = [t for k, _, t in order if t is not None and k == "amend"]
    sentences += [t for k, _, t in order if t is not None and k == "req"]
    sentences += [t for k, _, t in order if t is not None and k == "approp"]
    summary = f"{title} - " + " ".join(sentences)
    return title, text, summary


# --------------------------------------------------------------------------------------------
# 'copy': every name is made of random syllables, so it has to be read from the text.

_SYL_ON = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "dr", "gr",
           "kr", "st", "tr", "ch", "sh", "th"]
_SYL_NU = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
_SYL_CO = ["", "", "n", "r", "l", "s", "m", "th", "nd", "rk", "st"]
_ACT_NOUNS = ["Watershed", "Housing", "Conservation", "Workforce", "Broadband", "Health", "Transit", "Energy",
              "Fisheries", "Education", "Veterans", "Agriculture", "Flood Control", "Public Lands", "Water Supply"]
_PLACE_KINDS = ["County", "Valley", "Harbor", "River Basin", "National Forest", "Township"]
_AGENCY_KINDS = ["Commission", "Authority", "Board", "Administration", "Corporation", "Council"]
_ACTIONS_COPY = ["report to Congress", "issue regulations", "conduct a study", "award grants",
                 "publish guidance", "hold hearings"]
_ACTION_HEADINGS_COPY = ["REPORT", "REGULATIONS", "STUDY", "GRANTS", "GUIDANCE", "HEARINGS"]


def _make_name(rng: random.Random) -> str:
    """A pronounceable made-up word of 2-3 syllables ("Dorvain", "Strekal")."""
    n = rng.choice([2, 2, 3])
    w = "".join(rng.choice(_SYL_ON) + rng.choice(_SYL_NU) + (rng.choice(_SYL_CO) if i == n - 1 else "")
                for i in range(n))
    return w.capitalize()


def _name_pool(n: int) -> list[str]:
    rng = random.Random("summprune-synthetic/names")
    pool: dict[str, None] = {}
    while len(pool) < n:
        pool[_make_name(rng)] = None
    return list(pool)


#: The made-up names of the 'copy' corpus. Each is frequent enough in a corpus of thousands of
#: bills to be one token of a 4,000-token BPE vocabulary, so a summary copies a name in one step;
#: there are too many to guess the one a bill uses (and a bill draws 8-15 of them).
_NAMES = _name_pool(1000)


def _name(rng: random.Random) -> str:
    return rng.choice(_NAMES)


def _make_copy(rng: random.Random, v: _Vocab) -> tuple[str, str, str]:
    d = _Doc(rng, v, hard=True)

    def nn() -> str:
        return f"{_name(rng)} {_name(rng)}"

    title = f"{nn()} Act of {d.year}"
    agency = f"{nn()} {rng.choice(_AGENCY_KINDS)}"
    y1 = d.year + 1
    y2 = y1 + rng.randint(2, 6)

    # (heading, body, summary sentence): each kind is written one way in the text and one way in
    # the summary; a bill has 2-3 kinds, so two bills rarely share their summary's wording.
    def amend():
        act = (f"{nn()} {rng.choice(_ACT_NOUNS)} Act", rng.randint(5, 50), rng.randint(100, 9000))
        place = f"{nn()} {rng.choice(_PLACE_KINDS)}"
        k = rng.randrange(2)
        purpose = [f"establish a {rng.choice(v.programs)} for {rng.choice(v.groups)} in {place}",
                   f"expand {rng.choice(v.benefits)} in {place}"][k]
        head, body = d.amendment_section(act, k, purpose)
        return head, body, f"Amends the {act[0]} to {purpose}."

    def require():
        days = rng.randint(3, 99) * 10
        ak, action = rng.choice(list(enumerate(_ACTIONS_COPY)))
        return (_ACTION_HEADINGS_COPY[ak], f"Not later than {days} days after the date of the enactment of this Act, "
                f"the {agency} shall {action}.", f"Requires the {agency} to {action} within {days} days.")

    def authorize():
        amount = rng.randint(2, 95) * 5
        return ("AUTHORIZATION OF APPROPRIATIONS", f"There are authorized to be appropriated to carry out this Act "
                f"${amount},000,000 for each of fiscal years {y1} through {y2}.",
                f"Authorizes ${amount} million for fiscal years {y1} through {y2}.")

    def establish():
        office = f"{nn()} {rng.choice(['Office', 'Center', 'Task Force', 'Institute'])}"
        return ("ESTABLISHMENT", f"There is established within the {agency} an entity to be known as the "
                f"``{office}''.", f"Establishes the {office} within the {agency}.")

    def designate():
        number, street, town = rng.randint(10, 9999), _name(rng), _name(rng)
        honoree = f"{_name(rng)} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {_name(rng)}"
        return ("DESIGNATION", f"The facility of the United States Postal Service located at {number} {street} "
                f"Street in {town} shall be known and designated as the ``{honoree} Post Office Building''.",
                f"Designates the facility at {number} {street} Street in {town} as the {honoree} Post Office "
                f"Building.")

    def convey():
        acres, county = rng.randint(2, 950), f"{nn()} County"
        place = f"{nn()} {rng.choice(_PLACE_KINDS)}"
        return ("LAND CONVEYANCE", f"The {agency} shall convey to {county} all right, title, and interest of "
                f"the United States in and to the approximately {acres} acres of land in {place}.",
                f"Directs the {agency} to convey {acres} acres in {place} to {county}.")

    kinds = [amend, require, authorize, establish, designate, convey]
    primary = [f() for f in rng.sample(kinds, rng.choice([2, 3]))]
    sections = [(h, b) for h, b, _ in primary]
    other_act = (f"{nn()} {rng.choice(_ACT_NOUNS)} Act", rng.randint(5, 50), rng.randint(100, 9000))
    distract = [d.conforming_section(other_act),
                ("SENSE OF CONGRESS", f"It is the sense of Congress that the {nn()} {rng.choice(_AGENCY_KINDS)} "
                                      f"should {rng.choice(_ACTIONS_COPY)} within {rng.randint(3, 99) * 10} days."),
                d.findings_section(rng.randint(1, 3), "")]
    rng.shuffle(distract)
    # distractors go anywhere; the primary sections keep their order (the summary's order)
    for s in distract[: rng.randint(1, 2)]:
        sections.insert(rng.randint(0, len(sections)), s)
    summary = f"{title} - " + " ".join(t for _, _, t in primary)
    return title, _render(title, sections), summary

def make_corpus(n: int, seed: int = 42, difficulty: str = "easy") -> list[dict]:
    """``n`` BillSum-like documents: dicts with ``bill_id``, ``title``, ``text``, ``summary``."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty={difficulty!r}: choose one of {list(DIFFICULTIES)}")
    if n < 0:
        raise ValueError(f"n={n}: must be >= 0")
    make = {"easy": _make_easy, "hard": _make_hard, "copy": _make_copy}[difficulty]
    v = _VOCABS["easy" if difficulty == "easy" else "hard"]
    rows = []
    for i in range(n):
        # A str seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
        rng = random.Random(f"summprune-synthetic/{difficulty}/{seed}/{i}")
        title, text, summary = make(rng, v)
        rows.append({"bill_id": f"synth-{difficulty}-{seed}-{i:04d}", "title": title, "text": text,
                     "summary": summary})
    return rows


def corpus_stats(rows: list[dict]) -> dict:
    """Mean/min/max words of text and summary, and the word-type count of the texts."""
    if not rows:
        return {"docs": 0}
    tw = [_words(r["text"]) for r in rows]
    sw = [_words(r["summary"]) for r in rows]
    types = set()
    for r in rows:
        types.update(r["text"].split())
    return {"docs": len(rows), "text_words_mean": sum(tw) / len(tw), "text_words_min": min(tw),
            "text_words_max": max(tw), "summary_words_mean": sum(sw) / len(sw),
            "summary_words_min": min(sw), "summary_words_max": max(sw), "text_word_types": len(types)}
