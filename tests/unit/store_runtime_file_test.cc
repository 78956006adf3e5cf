// Runtime-directory writers: ReplaceFile swaps whole files, OverwriteRecord
// writes a same-size record into the existing inode.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "host_tpm_swtpm.h"
#include "store/runtime_file.h"

namespace vtpm {
namespace {

using testing::TempDir;

Bytes Read(const std::string& path) {
  auto r = ReadFileIfPresent(path);
  EXPECT_TRUE(r.ok() && *r) << path;
  return r.ok() && *r ? **r : Bytes();
}

ino_t Inode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

TEST(RuntimeFileTest, ReplaceFileSwapsWholeFilesAndReusesTheirInodes) {
  TempDir dir;
  const std::string path = dir.Sub("x.vol");
  const Bytes a(3000, 0xa1), b(100, 0xb2), c(5000, 0xc3);
  ASSERT_TRUE(ReplaceFile(path, a).ok());
  EXPECT_EQ(Read(path), a);
  EXPECT_FALSE(ReadFileIfPresent(path + ".tmp")->has_value());  // first write: a rename
  ASSERT_TRUE(ReplaceFile(path, b).ok());
  EXPECT_EQ(Read(path), b);  // shorter: cut to size
  EXPECT_EQ(Read(path + ".tmp"), a);  // exchanged: the previous copy waits to be overwritten
  const ino_t ino_b = Inode(path), ino_a = Inode(path + ".tmp");
  ASSERT_TRUE(ReplaceFile(path, c).ok());
  EXPECT_EQ(Read(path), c);
  EXPECT_EQ(Read(path + ".tmp"), b);
  EXPECT_EQ(Inode(path), ino_a);  // no new inode once both names exist
  EXPECT_EQ(Inode(path + ".tmp"), ino_b);
}

TEST(RuntimeFileTest, ReplaceFileOverwritesAHalfWrittenTmp) {
  TempDir dir;
  const std::string path = dir.Sub("x.vol");
  ASSERT_TRUE(ReplaceFile(path, Bytes(10, 1)).ok());
  // A daemon killed while writing the next copy leaves a partial .tmp.
  ASSERT_TRUE(ReplaceFile(path + ".tmp", Bytes(9000, 0xee)).ok());
  ASSERT_TRUE(ReplaceFile(path, Bytes(20, 2)).ok());
  EXPECT_EQ(Read(path), Bytes(20, 2));
}

TEST(RuntimeFileTest, OverwriteRecordWritesInPlaceOnlyAtTheSameSize) {
  TempDir dir;
  const std::string path = dir.Sub("x.responded");
  ASSERT_TRUE(OverwriteRecord(path, Bytes(28, 1)).ok());  // absent: created
  EXPECT_EQ(Read(path), Bytes(28, 1));
  const ino_t ino = Inode(path);
  ASSERT_TRUE(OverwriteRecord(path, Bytes(28, 2)).ok());
  EXPECT_EQ(Read(path), Bytes(28, 2));
  EXPECT_EQ(Inode(path), ino);  // in place
  EXPECT_FALSE(ReadFileIfPresent(path + ".tmp")->has_value());
  ASSERT_TRUE(OverwriteRecord(path, Bytes(20, 3)).ok());  // another size: replaced whole
  EXPECT_EQ(Read(path), Bytes(20, 3));
  const Bytes big(kMaxInPlaceRecord + 1, 4);
  ASSERT_TRUE(OverwriteRecord(path, big).ok());
  EXPECT_EQ(Read(path), big);
}

TEST(RuntimeFileTest, ErrorsNameThePath) {
  TempDir dir;
  const std::string path = dir.Sub("missing-dir/x.vol");
  Status st = ReplaceFile(path, Bytes(4, 0));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(path + ".tmp"), std::string::npos) << st.ToString();
  EXPECT_FALSE(OverwriteRecord(path, Bytes(4, 0)).ok());
}

}  // namespace
}  // namespace vtpm
