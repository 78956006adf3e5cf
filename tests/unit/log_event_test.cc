// Journal events: each MESSAGE_ID is well formed and unique, and the message
// catalogue shipped in systemd/ has exactly one entry per id, which journalctl
// itself accepts (design §9).
#include "common/log_event.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace vtpm {
namespace {

struct CatalogEntry {
  std::string subject;
  std::string defined_by;
  std::string support;
  std::string text;
};

// The catalogue's entries by id: "-- <id>" starts one, header lines until
// the first blank line, then the text.
std::map<std::string, CatalogEntry> ReadCatalog(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  std::map<std::string, CatalogEntry> out;
  CatalogEntry* cur = nullptr;
  bool in_header = false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("-- ", 0) == 0) {
      std::string id = line.substr(3);
      EXPECT_EQ(out.count(id), 0u) << "id twice in the catalogue: " << id;
      cur = &out[id];
      in_header = true;
    } else if (!cur || line.rfind('#', 0) == 0) {
      continue;
    } else if (in_header && line.empty()) {
      in_header = false;
    } else if (in_header) {
      auto colon = line.find(": ");
      if (colon == std::string::npos) {
        ADD_FAILURE() << "catalogue header without ': ': " << line;
        continue;
      }
      std::string k = line.substr(0, colon), v = line.substr(colon + 2);
      if (k == "Subject") cur->subject = v;
      else if (k == "Defined-By") cur->defined_by = v;
      else if (k == "Support") cur->support = v;
      else ADD_FAILURE() << "unknown catalogue header " << k;
    } else {
      cur->text += line + "\n";
    }
  }
  return out;
}

TEST(LogEvent, IdsAreWellFormedAndUnique) {
  std::set<std::string_view> ids, names;
  std::regex hex("^[0-9a-f]{32}$");
  for (const LogEventInfo& e : LogEvents()) {
    EXPECT_NE(e.event, LogEvent::kNone);
    EXPECT_TRUE(std::regex_match(std::string(e.message_id), hex)) << e.name;
    EXPECT_TRUE(ids.insert(e.message_id).second) << "duplicate id for " << e.name;
    EXPECT_TRUE(names.insert(e.name).second) << "duplicate name " << e.name;
    EXPECT_EQ(MessageId(e.event), e.message_id);
  }
  EXPECT_EQ(MessageId(LogEvent::kNone), "");
  // Every enumerator after kNone has an entry.
  EXPECT_EQ(LogEvents().size(), size_t(LogEvent::kVolatileLost));
}

TEST(LogEvent, ScopedEventNestsAndRestores) {
  EXPECT_EQ(CurrentLogEvent(), LogEvent::kNone);
  {
    ScopedLogEvent a(LogEvent::kAttached);
    EXPECT_EQ(CurrentLogEvent(), LogEvent::kAttached);
    {
      ScopedLogEvent b(LogEvent::kWiped);
      EXPECT_EQ(CurrentLogEvent(), LogEvent::kWiped);
    }
    EXPECT_EQ(CurrentLogEvent(), LogEvent::kAttached);
  }
  EXPECT_EQ(CurrentLogEvent(), LogEvent::kNone);
}

TEST(LogEvent, CatalogueHasOneEntryPerEvent) {
  auto cat = ReadCatalog(VTPM_CATALOG);
  std::set<std::string> want;
  for (const LogEventInfo& e : LogEvents()) want.insert(std::string(e.message_id));
  std::set<std::string> have;
  for (auto& [id, entry] : cat) {
    have.insert(id);
    EXPECT_FALSE(entry.subject.empty()) << id;
    EXPECT_EQ(entry.defined_by, "vtpmmgrd") << id;
    EXPECT_NE(entry.support.find("man:"), std::string::npos) << id;
    EXPECT_GT(entry.text.size(), 40u) << id;
  }
  EXPECT_EQ(have, want);
}

TEST(LogEvent, JournalctlCompilesTheCatalogue) {
  if (std::system("command -v journalctl >/dev/null 2>&1") != 0) GTEST_SKIP() << "no journalctl";
  char tmpl[] = "/tmp/vtpm-catalog-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path root(tmpl);
  std::filesystem::create_directories(root / "usr/lib/systemd/catalog");
  std::filesystem::copy_file(VTPM_CATALOG, root / "usr/lib/systemd/catalog/vtpmmgrd.catalog");
  const std::string list = (root / "list").string();
  ASSERT_EQ(std::system(("journalctl --root=" + root.string() + " --update-catalog && journalctl --root=" +
                         root.string() + " --list-catalog > " + list)
                            .c_str()),
            0);
  std::ifstream in(list);
  std::stringstream ss;
  ss << in.rdbuf();
  for (const LogEventInfo& e : LogEvents())
    EXPECT_NE(ss.str().find(std::string(e.message_id) + " vtpmmgrd: "), std::string::npos) << e.name;
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace vtpm
