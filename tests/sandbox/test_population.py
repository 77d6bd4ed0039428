"""The sandbox population: valid test identities, one of each case the counter must handle."""

from datetime import date, timedelta

from appliance.codes.gs1 import parse_gs1
from appliance.codes.ins import InsOid
from appliance.codes.kinds import CodeKind
from appliance.codes.nir import parse_nir
from appliance.codes.opaque import OpaquePatterns
from appliance.domain import InsiOutcome, Traits
from sandbox import population as pop
from sandbox.samples import MARIE, basic_samples

NAMED = ("martin-family", "insi-none", "insi-two", "c2s", "ald", "expired-amc", "corsica", "twins")


def test_at_least_twenty_people_with_valid_nirs_and_test_ins() -> None:
    assert len(pop.PEOPLE) >= 20
    for person in pop.PEOPLE.values():
        parse_nir(person.beneficiary.nir)
        parse_nir(person.beneficiary.holder_nir)
        assert person.amo.nir == person.beneficiary.nir
        if person.ins is not None:
            parse_nir(person.ins.matricule)
            assert person.ins.oid == InsOid.TEST.value == "1.2.250.1.213.1.4.10"
    nirs = [p.beneficiary.nir for p in pop.PEOPLE.values()]
    assert len(set(nirs)) == len(nirs)


def test_every_case_is_named_documented_and_resolves_to_its_holder() -> None:
    doc = pop.__doc__ or ""
    for key in NAMED:
        assert key in pop.CASES
    for key, case in pop.CASES.items():
        assert f"\n{key} " in doc, key
        holder = pop.person(key)
        assert holder.key == case.members[0]
        for member in pop.members(key):
            assert member.case == key
            if key != "insi-two":  # two homonyms, each with their own card
                assert member.beneficiary.holder_nir == holder.beneficiary.nir


def test_family_twins_corsica_provisional_and_rights_cases() -> None:
    martin = pop.members("martin-family")
    assert len(martin) == 4 and len({m.beneficiary.nir for m in martin}) == 4
    assert len({m.amc for m in martin}) == 1
    _, lucas, noah = pop.members("twins")
    assert lucas.beneficiary.traits.birth_date == noah.beneficiary.traits.birth_date
    assert (lucas.beneficiary.rank, noah.beneficiary.rank) == (1, 2)
    assert parse_nir(pop.person("corsica").beneficiary.nir).corsica
    assert pop.person("corsica").beneficiary.traits.birth_place == "2A004"
    assert pop.person("ald").beneficiary.nir[5:7] == "2B" and pop.person("ald").amo.ald
    assert all(p.amo.c2s and p.amc is None for p in pop.members("c2s"))
    provisional = pop.person("provisional")
    assert parse_nir(provisional.beneficiary.nir).provisional
    assert provisional.ins is not None and not parse_nir(provisional.ins.matricule).provisional
    expired = pop.person("expired-amc").amc
    assert expired is not None and expired.valid_to < pop.REFERENCE_DAY
    assert expired.renewed_to is not None and expired.renewed_to > pop.REFERENCE_DAY
    assert pop.person("insi-none").ins is None


def test_insi_outcomes_from_the_population() -> None:
    population = pop.POPULATION
    for key, outcome, count in (("martin-lea", "00", 1), ("insi-none", "01", 0), ("insi-two", "02", 2)):
        b = pop.person(key).beneficiary
        result = population.insi_by_card(b.holder_nir, b.traits.birth_date, b.rank)
        assert (result.outcome, len(result.identities)) == (InsiOutcome(outcome), count)
    dubois = pop.person("insi-two").beneficiary.traits
    nameless_place = Traits(dubois.birth_name, "Jean", "M", dubois.birth_date)
    assert population.insi_by_traits(nameless_place).outcome is InsiOutcome.SEVERAL
    assert population.insi_by_traits(dubois).outcome is InsiOutcome.FOUND


def test_apcv_tokens_match_the_sandbox_pattern_and_the_samples() -> None:
    patterns = OpaquePatterns()
    for token in pop.APCV_TOKENS.values():
        assert patterns.match(token) is CodeKind.APCV
    assert pop.APCV_CONTEXTS[pop.APCV_TOKENS["expired"]] == ("martin-family", True)
    sample = next(s for s in basic_samples() if s.name == "apcv")
    assert pop.APCV_CONTEXTS[sample.payload] == ("durand", False)
    assert "insi-none" not in pop.APCV_TOKENS
    durand = pop.person("durand")
    assert durand.ins is not None and durand.ins.matricule == MARIE.matricule


def test_prescriptions_reference_the_product_table() -> None:
    patterns = OpaquePatterns()
    table = pop.products()
    assert pop.SAMPLE_PRESCRIPTION_ID in pop.PRESCRIPTIONS
    for rx_id, rx in pop.PRESCRIPTIONS.items():
        assert patterns.match(rx_id.encode()) is CodeKind.EPRESCRIPTION
        assert rx.patient_nir in {p.beneficiary.nir for p in pop.PEOPLE.values()}
        for line in rx.lines:
            if line.cip13 is not None:
                product = table.get(line.cip13)
                assert product is not None and product.name == line.label
    lines = [line for rx in pop.PRESCRIPTIONS.values() for line in rx.lines]
    assert any(line.ald for line in lines) and any(line.cip13 is None for line in lines)
    assert any(rx.renewals > 0 for rx in pop.PRESCRIPTIONS.values())


def test_box_payloads_are_gs1_codes_of_the_products() -> None:
    boxes = pop.box_payloads()
    assert set(boxes) == {p.cip13 for p in pop.products()}
    for cip13, payload in boxes.items():
        box = parse_gs1(payload)
        assert box.gtin == "0" + cip13 and box.cip13 == cip13
        assert box.expiry is not None and box.expiry > date(2027, 1, 1)
    assert len({parse_gs1(p).serial for p in boxes.values()}) == len(boxes)
    expired = parse_gs1(pop.EXPIRED_BOX)
    assert expired.cip13 == pop.DOLIPRANE_1000 and expired.expiry == date(2025, 1, 31)
    sample_box = next(s for s in basic_samples() if s.name == "box-doliprane")
    assert parse_gs1(sample_box.payload).cip13 in {li.cip13 for li in pop.PRESCRIPTIONS["EP7K2Q-9XWM-4TDA-LR8C"].lines}


def test_the_dossier_pharmaceutique_has_recent_and_older_dispensations_of_known_products() -> None:
    table = pop.products()
    four_months_back = pop.REFERENCE_DAY - timedelta(days=4 * 31)
    assert set(pop.DP_HISTORIES) <= set(pop.PEOPLE)
    for key, entries in pop.DP_HISTORIES.items():
        assert [e.day for e in entries] == sorted((e.day for e in entries), reverse=True), key
        assert any(e.day >= four_months_back for e in entries) and any(e.day < four_months_back for e in entries)
        for entry in entries:
            product = table.get(entry.cip13 or "")
            assert product is not None and product.name == entry.label and entry.quantity >= 1
            assert entry.pharmacy and entry.pharmacy != "Pharmacie du Bac à sable"
    assert pop.POPULATION.dp_histories is pop.DP_HISTORIES
    assert "DP_HISTORIES" in (pop.__doc__ or "")
