// epg-bench result files: every step checked, failures name the path and the OS error.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "bench.hpp"

namespace epgraph::bench {
namespace {
namespace fs = std::filesystem;

constexpr const char* choose_out = "pass --out a prefix in a folder you can write (missing folders are created)";

[[noreturn]] void fail(const std::string& step, const std::string& path, const std::string& os_error,
                       const std::string& hint) {
  throw output_error("cannot " + step + " '" + path + "': " + os_error + " -- " + hint);
}
[[noreturn]] void fail_errno(const std::string& step, const std::string& path, int saved_errno,
                             const std::string& hint) {
  fail(step, path, std::strerror(saved_errno), hint);
}

// Writes all of text and flushes it to the OS; returns 0 or the errno of the failing call.
int write_all(std::FILE* f, const std::string& text) {
  errno = 0;
  if (std::fwrite(text.data(), 1, text.size(), f) != text.size() || std::fflush(f) != 0) return errno ? errno : EIO;
  return 0;
}
}  // namespace

report_files::report_files(const std::string& prefix) : csv_path_(prefix + ".csv"), json_path_(prefix + ".json") {
  const fs::path folder = fs::path(csv_path_).parent_path();
  std::error_code ec;
  if (!folder.empty()) {
    fs::create_directories(folder, ec);
    if (ec) fail("create the output folder", folder.string(), ec.message(), choose_out);
  }
  // The JSON is written at the end: check now that it can be, so a sweep never runs for nothing. A
  // JSON left by an earlier run goes, so it is never taken for this run's.
  if (fs::is_directory(json_path_, ec)) fail("write the JSON", json_path_, "it is a folder", choose_out);
  const std::string probe = json_path_ + ".tmp";
  std::FILE* f = std::fopen(probe.c_str(), "w");
  if (!f) fail_errno("create the JSON's temporary file", probe, errno, choose_out);
  std::fclose(f);
  std::remove(probe.c_str());
  if (!fs::remove(json_path_, ec) && ec) fail("remove the earlier run's JSON", json_path_, ec.message(), choose_out);

  csv_ = std::fopen(csv_path_.c_str(), "w");
  if (!csv_) fail_errno("create the CSV", csv_path_, errno, choose_out);
  if (int e = write_all(csv_, csv_header())) fail_errno("write the header of the CSV", csv_path_, e, choose_out);
}

report_files::~report_files() {
  if (csv_) std::fclose(csv_);  // unwinding: every finished row is already flushed
}

void report_files::add(const result& r) {
  if (!csv_) fail("add a row to", csv_path_, "the CSV is already closed", "call add() before finish()");
  if (int e = write_all(csv_, csv_row(r)))
    fail_errno("write a row to", csv_path_, e, "free space or choose another --out; earlier rows are in the file");
  results_.push_back(r);
}

void report_files::finish() {
  if (csv_) {
    std::FILE* f = std::exchange(csv_, nullptr);
    errno = 0;
    if (std::fclose(f) != 0) fail_errno("close", csv_path_, errno ? errno : EIO, "check the disk; rows may be missing");
  }
  const std::string temporary = json_path_ + ".tmp", text = json_text(results_);
  std::FILE* f = std::fopen(temporary.c_str(), "w");
  if (!f) fail_errno("create", temporary, errno, choose_out);
  int e = write_all(f, text);
  errno = 0;
  if (std::fclose(f) != 0 && !e) e = errno ? errno : EIO;
  if (e) {
    std::remove(temporary.c_str());
    fail_errno("write the JSON to", temporary, e, "free space or choose another --out; the CSV is complete");
  }
  if (std::rename(temporary.c_str(), json_path_.c_str()) != 0) {
    e = errno;
    std::remove(temporary.c_str());
    fail_errno("rename '" + temporary + "' to", json_path_, e, "check the folder's permissions; the CSV is complete");
  }
}

}  // namespace epgraph::bench
