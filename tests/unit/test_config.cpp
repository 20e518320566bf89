#include <gtest/gtest.h>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/error.hpp"

using namespace epgraph::comm;

namespace {
ep_config good() {
  ep_config c;
  c.ep_size = 4;
  c.max_tokens_per_rank = 4096;
  c.top_k = 8;
  c.num_experts = 256;
  c.hidden = 7168;
  c.payloads = {{"hidden", 7168 * 2}, {"weights", 32}};
  return c;
}

// Expects validate() to throw a config error whose text names `field` and contains `fragment`.
void expect_rejected(const ep_config& c, const std::string& field, const std::string& fragment) {
  try {
    validate(c);
    FAIL() << "config accepted, expected rejection of " << field;
  } catch (const error& e) {
    EXPECT_EQ(e.domain(), error_domain::config);
    EXPECT_EQ(e.call(), field);
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

// describe_mismatch over the fingerprints of `per_rank` (rank r's config at index r).
std::string mismatch_of(const std::vector<ep_config>& per_rank) {
  std::vector<std::string> names;
  for (const auto& field : fingerprint(per_rank.at(0))) names.push_back(field.first);
  std::vector<std::vector<std::int64_t>> all;
  for (const ep_config& c : per_rank) {
    all.emplace_back();
    for (const auto& field : fingerprint(c)) all.back().push_back(field.second);
  }
  return describe_mismatch(names, all);
}

}  // namespace

TEST(Config, AcceptsTypicalDeepSeekShape) { EXPECT_NO_THROW(validate(good())); }

TEST(Config, RejectsEachFieldWithItsRange) {
  auto c = good();
  c.ep_size = 0;
  expect_rejected(c, "ep_size", "allowed range [1, 64]");
  c = good();
  c.ep_size = 65;
  expect_rejected(c, "ep_size", "is 65");
  c = good();
  c.top_k = 33;
  expect_rejected(c, "top_k", "allowed range [1, 32]");
  c = good();
  c.num_experts = 258;
  expect_rejected(c, "num_experts", "not divisible by ep_size 4");
  c = good();
  c.max_tokens_per_rank = 0;
  expect_rejected(c, "max_tokens_per_rank", "is 0");
  c = good();
  c.payloads.resize(9, {"x", 16});
  expect_rejected(c, "payloads.size()", "allowed range [0, 8]");
  c = good();
  c.payloads[1].row_bytes = 0;
  expect_rejected(c, "payloads[1].row_bytes", "is 0");
  c = good();
  c.threads_per_cta = 100;
  expect_rejected(c, "threads_per_cta", "not a multiple of 32");
  c = good();
  c.threads_per_cta = 1024;
  expect_rejected(c, "threads_per_cta", "allowed range [64, 512]");
  c = good();
  c.num_ctas = 2000;
  expect_rejected(c, "num_ctas", "allowed range [1, 1024]");
  c = good();
  c.num_experts = 4;
  c.top_k = 8;
  expect_rejected(c, "top_k", "cannot pick more experts than exist");
}

TEST(Config, ParsesElementTypes) {
  EXPECT_EQ(parse_element_type("bf16"), element_type::bf16);
  EXPECT_EQ(parse_element_type("fp32"), element_type::fp32);
  EXPECT_EQ(element_size(element_type::fp16), 2u);
  EXPECT_THROW(parse_element_type("fp8"), error);
}

TEST(Config, MismatchNamesFieldAndEveryRanksValue) {
  auto c = good();
  c.hidden = 2880;
  EXPECT_EQ(mismatch_of({good(), good()}), "");
  EXPECT_EQ(mismatch_of({good(), c, good()}),
            "field 'hidden' differs between ranks: rank 0=7168 rank 1=2880 rank 2=7168");
}

TEST(Config, FingerprintCoversPayloadRowSizes) {
  auto c = good();
  auto before = fingerprint(c);
  c.payloads[0].row_bytes = 7168;  // fp8 instead of bf16
  auto after = fingerprint(c);
  ASSERT_EQ(before.size(), after.size());
  int differing = 0;
  for (std::size_t i = 0; i < before.size(); ++i) differing += before[i] != after[i];
  EXPECT_EQ(differing, 1);
}

TEST(Config, LsaTeamMustBeTheDomain) {
  EXPECT_NO_THROW(check_lsa_team(4, 0, 2, 4, 2));
  EXPECT_NO_THROW(check_lsa_team(1, 0, 0, 1, 0));
  EXPECT_NO_THROW(check_lsa_team(4, 2, 3, 2, 1));  // 2 x 2: rank 3 is LSA rank 1 of ranks 2..3
  EXPECT_NO_THROW(check_lsa_team(4, 1, 2, 1, 0));  // 4 x 1: every rank is a domain of its own
  // Two nodes of two GPUs: NCCL forms LSA teams of 2 for an EP group of 4 in one domain.
  try {
    check_lsa_team(4, 0, 3, 2, 1);
    FAIL() << "a 2-rank LSA team was accepted for a domain of 4";
  } catch (const error& e) {
    EXPECT_EQ(e.domain(), error_domain::nccl);
    const std::string text = e.what();
    EXPECT_NE(text.find("team of rank 3 has 2 rank(s)"), std::string::npos) << text;
    EXPECT_NE(text.find("its domain is ranks 0..3 (4 of the EP group's 4)"), std::string::npos) << text;
    EXPECT_NE(text.find("set ep_config::domain_size to the GPUs per node (2 here)"), std::string::npos) << text;
  }
  // Same size but a different order: kernels would address the wrong peers.
  try {
    check_lsa_team(4, 0, 1, 4, 2);
    FAIL() << "an LSA rank that differs from the EP rank was accepted";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("LSA rank 2"), std::string::npos) << e.what();
  }
  // A domain of 2 whose team NCCL formed over other ranks (ranks not numbered node by node).
  try {
    check_lsa_team(4, 2, 2, 2, 1);
    FAIL() << "rank 2 at LSA rank 1 was accepted as the first rank of domain 2..3";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("its domain is ranks 2..3"), std::string::npos) << e.what();
  }
}

TEST(Config, DomainSizeMustDivideTheGroup) {
  ep_config c = good();
  for (int L : {0, 1, 2, 4}) {
    c.domain_size = L;
    EXPECT_NO_THROW(validate(c)) << L;
    EXPECT_EQ(c.ranks_per_domain(), L == 0 ? 4 : L);
    EXPECT_EQ(c.remote_ranks(), 4 - c.ranks_per_domain());
  }
  c.domain_size = 3;
  expect_rejected(c, "domain_size", "is 3, which does not divide ep_size 4");
  c.domain_size = 5;
  expect_rejected(c, "domain_size", "allowed range [0, 4]");
  c.domain_size = -1;
  expect_rejected(c, "domain_size", "allowed range [0, 4]");
}

// The exchanges' CTA count must agree: NCCL forms one communicator of it on every rank.
TEST(Config, RemoteCtasAreBoundedAndAgreed) {
  ep_config c = good();
  for (int n : {0, 1, 32, max_remote_ctas}) {
    c.remote_ctas = n;
    EXPECT_NO_THROW(validate(c)) << n;
  }
  c.remote_ctas = max_remote_ctas + 1;
  expect_rejected(c, "remote_ctas", "allowed range [0, 64]");
  c.remote_ctas = -1;
  expect_rejected(c, "remote_ctas", "allowed range [0, 64]");
  ep_config a = good(), b = good();
  EXPECT_EQ(a.remote_ctas, 0);  // the default: NCCL's choice, the caller's config inherited
  b.remote_ctas = 64;
  EXPECT_EQ(mismatch_of({a, b}), "field 'remote_ctas' differs between ranks: rank 0=0 rank 1=64");
}

TEST(Config, FingerprintCarriesTheDomainSizeAsGiven) {
  ep_config a = good(), b = good();
  a.domain_size = 0;
  b.domain_size = b.ep_size;  // 0 is NCCL's NVLink team, which is ep_size on one node only
  EXPECT_NE(fingerprint(a), fingerprint(b));
  b.domain_size = 0;
  EXPECT_EQ(fingerprint(a), fingerprint(b));
}

// domain_size 0 takes NCCL's NVLink team of the EP communicator, which every rank reports:
// two nodes of 8 GPUs give domains of 8; a set size wins over the team; teams that differ
// between ranks, or a team that is no domain, are an error that says what to set.
TEST(Config, DomainSizeZeroTakesTheNvlinkTeam) {
  EXPECT_EQ(resolve_domain_size(0, 16, std::vector<int>(16, 8)), 8);  // two nodes of 8
  EXPECT_EQ(resolve_domain_size(0, 4, std::vector<int>(4, 4)), 4);    // one node: one domain
  EXPECT_EQ(resolve_domain_size(0, 12, std::vector<int>(12, 4)), 4);  // nodes of 8 and 4: their gcd
  EXPECT_EQ(resolve_domain_size(2, 16, std::vector<int>(16, 0)), 2);  // set: the teams are not asked
  for (const int team : {0, -1, 3, 32}) {
    try {
      (void)resolve_domain_size(0, 16, std::vector<int>(16, team));
      FAIL() << "an NVLink team of " << team << " became the domain size of 16 ranks";
    } catch (const error& e) {
      const std::string text = e.what();
      EXPECT_EQ(e.domain(), error_domain::nccl);
      EXPECT_NE(text.find("has " + std::to_string(team) + " rank(s), which is no domain size for an EP group of 16"),
                std::string::npos) << text;
      EXPECT_NE(text.find("set ep_config::domain_size to the GPUs per node"), std::string::npos) << text;
    }
  }
  std::vector<int> teams(8, 4);
  teams[5] = 0;  // rank 5's query failed
  try {
    (void)resolve_domain_size(0, 8, teams);
    FAIL() << "teams that differ between ranks were accepted";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("differ between ranks: rank 0 has 4 rank(s), rank 5 has 0"),
              std::string::npos) << e.what();
  }
}
