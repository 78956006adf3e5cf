// A full disk fails the commit with an error, loses nothing, and the
// instance works again once space is freed.
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "fault_vfs.h"
#include "store_fault_util.h"

namespace vtpm::testing {
namespace {

void ExpectFullThenRecover(Store& s, const std::function<void(bool)>& set_full) {
  ASSERT_TRUE(CreateInstances(s, 3).ok());
  ASSERT_TRUE(s.CommitSync(NextCommit(0, 1)).ok());
  set_full(true);
  int failures = 0;
  for (int k = 0; k < 20; ++k) {  // keep writing until the space runs out
    auto r = s.CommitSync(NextCommit(1, 1 + uint64_t(k - failures)));
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kIoError) << r.status().message();
      EXPECT_EQ(r.status().sub_code(), ENOSPC) << r.status().message();
      EXPECT_NE(r.status().message().find("no space"), std::string::npos) << r.status().message();
      ++failures;
      break;
    }
  }
  ASSERT_EQ(failures, 1) << "the disk never filled";
  auto l = s.Load(InstanceId(1));
  ASSERT_TRUE(l.ok()) << l.status().message();
  const uint64_t g = l->generation;
  EXPECT_EQ(l->permanent, Content(1, g));
  EXPECT_EQ(s.Load(InstanceId(0))->generation, 2u);
  set_full(false);
  auto again = s.CommitSync(NextCommit(1, g));
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(*again, g + 1);
  EXPECT_EQ(s.Load(InstanceId(1))->permanent, Content(1, g + 1));
}

TEST(StoreEnospc, VfsReportsFull) {
  FaultVfs::Register();
  FaultVfs::RestorePower();
  TempDir dir;
  StoreOptions o = OptionsIn(dir);
  o.sqlite_vfs = FaultVfs::kName;
  {
    auto s = OpenStoreWithKey(o, TestMaster());
    ASSERT_TRUE(s.ok()) << s.status().message();
    ExpectFullThenRecover(**s, [](bool full) { FaultVfs::SetDiskFull(full); });
  }
  FaultVfs::SetDiskFull(false);
  auto s = OpenStoreWithKey(o, TestMaster());
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_TRUE((*s)->Load(InstanceId(1)).ok());
}

// The real thing: the state directory on a small tmpfs filled by a file.
TEST(StoreEnospc, RealFullFilesystem) {
  TempDir dir;
  const std::string mnt = dir.Sub("small");
  std::filesystem::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=4m") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
  struct Unmount {  // also when an assertion returns early
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string filler = mnt + "/filler";
  {
    StoreOptions o;
    o.state_dir = mnt + "/state";
    o.runtime_dir = dir.Sub("run");
    auto s = OpenStoreWithKey(o, TestMaster());
    ASSERT_TRUE(s.ok()) << s.status().message();
    ExpectFullThenRecover(**s, [&](bool full) {
      if (!full) {
        std::filesystem::remove(filler);
        return;
      }
      std::ofstream f(filler, std::ios::binary);
      std::string chunk(4096, 'x');
      while (f.write(chunk.data(), std::streamsize(chunk.size())) && f.flush()) {
      }
    });
  }
}

}  // namespace
}  // namespace vtpm::testing
