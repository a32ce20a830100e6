//! `ferry-gen-docs OUT_DIR`: writes the man pages and shell completions of `ferry-build`
//! and `ferry-install` under `OUT_DIR`, from the same clap definitions the binaries parse
//! their arguments with (their `main.rs` files are compiled into this program):
//!
//! ```text
//! OUT_DIR/man/ferry-install.1, ferry-install-verify.1, ...   (one page per subcommand)
//! OUT_DIR/completions/bash/ferry-install
//! OUT_DIR/completions/zsh/_ferry-install
//! OUT_DIR/completions/fish/ferry-install.fish
//! ```
//!
//! The pages are dated by `SOURCE_DATE_EPOCH` when it is set (reproducible packages).
//! The release scripts under `release/` run it; it is not installed anywhere.

use anyhow::Context;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

#[allow(dead_code, unused_imports, clippy::all)]
mod ferry_build {
    include!(concat!(env!("OUT_DIR"), "/ferry_build.rs"));

    pub fn command() -> clap::Command {
        <Cli as clap::CommandFactory>::command()
    }
}

#[allow(dead_code, unused_imports, clippy::all)]
mod ferry_install {
    include!(concat!(env!("OUT_DIR"), "/ferry_install.rs"));

    pub fn command() -> clap::Command {
        <Cli as clap::CommandFactory>::command()
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        anyhow::bail!("usage: ferry-gen-docs OUT_DIR");
    };
    let out = PathBuf::from(out);
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .map(|v| v.trim().parse::<u64>().map(iso_date))
        .transpose()
        .context("SOURCE_DATE_EPOCH is not a number of seconds")?;
    for cmd in [ferry_build::command(), ferry_install::command()] {
        write_docs(cmd, &out, date.as_deref())?;
    }
    Ok(())
}

fn write_docs(mut cmd: clap::Command, out: &Path, date: Option<&str>) -> anyhow::Result<()> {
    cmd.build();
    let name = cmd.get_name().to_string();
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    write_pages(&cmd, &man, date)?;
    for (shell, dir, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let dir = out.join("completions").join(dir);
        std::fs::create_dir_all(&dir)?;
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut text);
        std::fs::write(dir.join(&file), text).with_context(|| format!("{}", dir.display()))?;
    }
    Ok(())
}

/// One page for `cmd` and one for each visible subcommand, named after clap's display
/// name (`ferry-install-backup-create.1`); `cmd` must be built.
fn write_pages(cmd: &clap::Command, man: &Path, date: Option<&str>) -> anyhow::Result<()> {
    let page = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    let mut page_man = clap_mangen::Man::new(cmd.clone())
        .title(page.to_uppercase())
        .source(format!("ferry {}", env!("CARGO_PKG_VERSION")))
        .manual("ferry manual");
    if let Some(date) = date {
        page_man = page_man.date(date);
    }
    let mut text = Vec::new();
    page_man.render(&mut text)?;
    let path = man.join(format!("{page}.1"));
    std::fs::write(&path, text).with_context(|| format!("{}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() != "help" {
            write_pages(sub, man, date)?;
        }
    }
    Ok(())
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
fn iso_date(secs: u64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates() {
        assert_eq!(super::iso_date(0), "1970-01-01");
        assert_eq!(super::iso_date(951_782_400), "2000-02-29");
        assert_eq!(super::iso_date(1_767_225_599), "2025-12-31");
    }
}
