//! Choosing package versions and closing over their dependencies.
//!
//! For each requested package the newest version matching the request wins. Its
//! `Pre-Depends` and `Depends` are followed transitively: a group of alternatives is
//! satisfied first by what is already chosen or present on the target (the baseline),
//! and otherwise by the first alternative available in a repository — apt's own order of
//! preference. Virtual packages resolve through `Provides`, `:any`/`:native` and
//! `Multi-Arch` decide which architectures may satisfy a dependency, and every version
//! constraint is checked on every edge.

use super::version::{satisfies, VersionReq};
use super::Candidate;
use debian_packaging::dependency::{DependencyVariants, SingleDependency};
use debian_packaging::package_version::PackageVersion;
use ferry_bundle::Role;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

/// What is assumed to be on the target already.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    /// Where it came from, for messages.
    pub source: String,
    packages: HashMap<String, Vec<Present>>,
    provides: HashMap<String, Vec<ProvidedBy>>,
}

/// A virtual package on the target: (provided version, arch, Multi-Arch of the provider).
type ProvidedBy = (Option<PackageVersion>, String, Option<String>);

#[derive(Clone, Debug)]
struct Present {
    version: PackageVersion,
    arch: String,
    multi_arch: Option<String>,
}

impl Baseline {
    /// An empty baseline described as `source`.
    pub fn new(source: impl Into<String>) -> Baseline {
        Baseline {
            source: source.into(),
            ..Baseline::default()
        }
    }

    /// Record an installed package.
    pub fn add(
        &mut self,
        name: &str,
        version: PackageVersion,
        arch: &str,
        multi_arch: Option<&str>,
        provides: &[(String, Option<PackageVersion>)],
    ) {
        for (virt, v) in provides {
            self.provides.entry(virt.clone()).or_default().push((
                v.clone(),
                arch.to_string(),
                multi_arch.map(String::from),
            ));
        }
        self.packages
            .entry(name.to_string())
            .or_default()
            .push(Present {
                version,
                arch: arch.to_string(),
                multi_arch: multi_arch.map(String::from),
            });
    }

    /// Number of packages in it.
    pub fn len(&self) -> usize {
        self.packages.values().map(Vec::len).sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// The installed version of `name`, if any (for messages).
    fn version_of(&self, name: &str) -> Option<String> {
        self.packages.get(name).map(|v| {
            v.iter()
                .map(|p| p.version.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    /// What every Debian/Ubuntu system has: `Essential: yes` and `Priority: required`
    /// packages of the repositories, with their own dependency closure.
    pub fn essential(universe: &Universe) -> Baseline {
        let mut chooser = Resolver::new(universe, Baseline::new("essential set"));
        let mut names: Vec<&str> = universe
            .candidates
            .iter()
            .filter(|c| c.essential || c.priority.as_deref() == Some("required"))
            .map(|c| c.name.as_str())
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            if let Some(idx) = universe.newest(name, &VersionReq::Any, None) {
                // Best effort: whatever part of the essential set resolves is present.
                let _ = chooser.add_root(idx, Role::Dependency, "essential", true);
            }
        }
        let mut base = Baseline::new(format!(
            "the essential set of the repositories ({} packages: Essential: yes, Priority: required and their dependencies)",
            chooser.chosen.len()
        ));
        for chosen in chooser.chosen.values() {
            let c = &universe.candidates[chosen.candidate];
            base.add(
                &c.name,
                c.version.clone(),
                &c.arch,
                c.multi_arch.as_deref(),
                &c.provides,
            );
        }
        base
    }
}

/// Every candidate of every repository, indexed.
pub struct Universe {
    /// All candidates.
    pub candidates: Vec<Candidate>,
    /// The target's native architecture.
    pub native_arch: String,
    by_name: HashMap<String, Vec<usize>>,
    providers: HashMap<String, Vec<usize>>,
}

impl Universe {
    /// Index the candidates.
    pub fn new(candidates: Vec<Candidate>, native_arch: &str) -> Universe {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in candidates.iter().enumerate() {
            by_name.entry(c.name.clone()).or_default().push(i);
            for (virt, _) in &c.provides {
                providers.entry(virt.clone()).or_default().push(i);
            }
        }
        Universe {
            candidates,
            native_arch: native_arch.to_string(),
            by_name,
            providers,
        }
    }

    /// Versions of `name` on offer (newest first), optionally in one repository.
    pub fn versions(&self, name: &str, repo: Option<usize>) -> Vec<&Candidate> {
        let mut v: Vec<&Candidate> = self
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| &self.candidates[i])
            .filter(|c| repo.is_none_or(|r| c.repo == r))
            .collect();
        v.sort_by(|a, b| b.version.cmp(&a.version).then(a.repo.cmp(&b.repo)));
        v
    }

    /// The newest version of `name` matching `req`.
    pub fn newest(&self, name: &str, req: &VersionReq, repo: Option<usize>) -> Option<usize> {
        let mut best: Option<usize> = None;
        for &i in self.by_name.get(name).into_iter().flatten() {
            let c = &self.candidates[i];
            if repo.is_some_and(|r| c.repo != r) || !req.matches(&c.version) {
                continue;
            }
            // Newest version; between repositories, the one listed first in the spec.
            let better = match best {
                None => true,
                Some(b) => {
                    let cb = &self.candidates[b];
                    c.version > cb.version || (c.version == cb.version && c.repo < cb.repo)
                }
            };
            if better {
                best = Some(i);
            }
        }
        best
    }
}

/// One package chosen for the bundle.
#[derive(Clone, Debug)]
pub struct Chosen {
    /// Index into [`Universe::candidates`].
    pub candidate: usize,
    /// Why it is here.
    pub role: Role,
    /// Human reason: "named in the spec", or the dependency chain.
    pub reason: String,
    /// The requested package whose closure pulled it in.
    pub root: String,
}

/// A dependency that could not be satisfied.
#[derive(Debug)]
pub struct Unsatisfiable(pub String);

/// The dependency-closure engine.
pub struct Resolver<'u> {
    universe: &'u Universe,
    baseline: Baseline,
    /// Chosen packages by name.
    pub chosen: BTreeMap<String, Chosen>,
}

impl<'u> Resolver<'u> {
    /// A resolver over `universe` against `baseline`.
    pub fn new(universe: &'u Universe, baseline: Baseline) -> Resolver<'u> {
        Resolver {
            universe,
            baseline,
            chosen: BTreeMap::new(),
        }
    }

    /// The baseline in use.
    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    /// Add a requested package, and with `closure` everything it needs.
    pub fn add_root(
        &mut self,
        idx: usize,
        role: Role,
        reason: &str,
        closure: bool,
    ) -> Result<(), Unsatisfiable> {
        let c = &self.universe.candidates[idx];
        let name = c.name.clone();
        if role == Role::Previous {
            // Carried beside the new version, never part of a closure.
            self.chosen.insert(
                format!("{name}\0previous"),
                Chosen {
                    candidate: idx,
                    role,
                    reason: reason.to_string(),
                    root: name,
                },
            );
            return Ok(());
        }
        if let Some(existing) = self.chosen.get(&name) {
            let e = &self.universe.candidates[existing.candidate];
            if e.version != c.version {
                return Err(Unsatisfiable(format!(
                    "{name} is requested at {} but {} was already chosen ({})",
                    c.version_str, e.version_str, existing.reason
                )));
            }
            if role == Role::Target {
                // Named in the spec after being pulled in as a dependency: it is a target.
                let entry = self.chosen.get_mut(&name).expect("present");
                entry.role = Role::Target;
                entry.reason = reason.to_string();
            }
        } else {
            self.chosen.insert(
                name.clone(),
                Chosen {
                    candidate: idx,
                    role,
                    reason: reason.to_string(),
                    root: name.clone(),
                },
            );
        }
        if closure {
            self.close(idx, &name)?;
        }
        Ok(())
    }

    fn close(&mut self, start: usize, root: &str) -> Result<(), Unsatisfiable> {
        let mut queue: VecDeque<(usize, Vec<String>)> = VecDeque::new();
        queue.push_back((start, vec![self.label(start)]));
        while let Some((idx, chain)) = queue.pop_front() {
            let cand = self.universe.candidates[idx].clone();
            for list in &cand.depends {
                for group in list.requirements() {
                    if self.group_satisfied(group, &cand.arch) {
                        continue;
                    }
                    let pick = group.iter().find_map(|dep| self.available(dep, &cand.arch));
                    let Some(pick) = pick else {
                        return Err(Unsatisfiable(self.explain(group, &chain)));
                    };
                    let picked = &self.universe.candidates[pick];
                    if let Some(existing) = self.chosen.get(&picked.name) {
                        let e = &self.universe.candidates[existing.candidate];
                        return Err(Unsatisfiable(format!(
                            "{} needs {group}, but {} {} was already chosen ({})",
                            chain.join(" -> "),
                            e.name,
                            e.version_str,
                            existing.reason
                        )));
                    }
                    let mut next = chain.clone();
                    next.push(format!("{} ({group})", self.label(pick)));
                    self.chosen.insert(
                        picked.name.clone(),
                        Chosen {
                            candidate: pick,
                            role: Role::Dependency,
                            reason: next.join(" -> "),
                            root: root.to_string(),
                        },
                    );
                    queue.push_back((pick, next));
                }
            }
        }
        Ok(())
    }

    fn label(&self, idx: usize) -> String {
        let c = &self.universe.candidates[idx];
        format!("{} {}", c.name, c.version_str)
    }

    fn group_satisfied(&self, group: &DependencyVariants, from_arch: &str) -> bool {
        group.iter().any(|dep| {
            let (name, qual) = split_qualifier(&dep.package);
            // Already chosen (as a real package or a provider).
            let chosen_ok = self
                .chosen
                .values()
                .filter(|c| c.role != Role::Previous)
                .any(|c| {
                    let cand = &self.universe.candidates[c.candidate];
                    (cand.name == name
                        && version_ok(dep, &cand.version)
                        && arch_ok(
                            qual,
                            from_arch,
                            &cand.arch,
                            cand.multi_arch.as_deref(),
                            &self.universe.native_arch,
                        ))
                        || cand.provides.iter().any(|(v, pv)| {
                            v == name
                                && provided_ok(dep, pv.as_ref())
                                && arch_ok(
                                    qual,
                                    from_arch,
                                    &cand.arch,
                                    cand.multi_arch.as_deref(),
                                    &self.universe.native_arch,
                                )
                        })
                });
            if chosen_ok {
                return true;
            }
            let base_real = self
                .baseline
                .packages
                .get(name)
                .into_iter()
                .flatten()
                .any(|p| {
                    version_ok(dep, &p.version)
                        && arch_ok(
                            qual,
                            from_arch,
                            &p.arch,
                            p.multi_arch.as_deref(),
                            &self.universe.native_arch,
                        )
                });
            let base_virtual =
                self.baseline
                    .provides
                    .get(name)
                    .into_iter()
                    .flatten()
                    .any(|(pv, arch, ma)| {
                        provided_ok(dep, pv.as_ref())
                            && arch_ok(
                                qual,
                                from_arch,
                                arch,
                                ma.as_deref(),
                                &self.universe.native_arch,
                            )
                    });
            base_real || base_virtual
        })
    }

    /// The best candidate satisfying one alternative: a real package first (newest),
    /// else a provider (newest of the alphabetically first provider name).
    fn available(&self, dep: &SingleDependency, from_arch: &str) -> Option<usize> {
        let (name, qual) = split_qualifier(&dep.package);
        let u = self.universe;
        let native = &u.native_arch;
        let real = u
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| {
                let c = &u.candidates[i];
                version_ok(dep, &c.version)
                    && arch_ok(qual, from_arch, &c.arch, c.multi_arch.as_deref(), native)
            })
            .max_by(|&a, &b| {
                u.candidates[a]
                    .version
                    .cmp(&u.candidates[b].version)
                    .then(u.candidates[b].repo.cmp(&u.candidates[a].repo))
            });
        if real.is_some() {
            return real;
        }
        let mut providers: Vec<usize> = u
            .providers
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| {
                let c = &u.candidates[i];
                c.provides
                    .iter()
                    .any(|(v, pv)| v == name && provided_ok(dep, pv.as_ref()))
                    && arch_ok(qual, from_arch, &c.arch, c.multi_arch.as_deref(), native)
            })
            .collect();
        providers.sort_by(|&a, &b| {
            let (ca, cb) = (&u.candidates[a], &u.candidates[b]);
            ca.name.cmp(&cb.name).then(cb.version.cmp(&ca.version))
        });
        providers.first().copied()
    }

    fn explain(&self, group: &DependencyVariants, chain: &[String]) -> String {
        let mut s = format!(
            "unsatisfiable dependency: {} needs {group}",
            chain.join(" -> ")
        );
        for dep in group.iter() {
            let (name, _) = split_qualifier(&dep.package);
            let versions: Vec<String> = self
                .universe
                .versions(name, None)
                .iter()
                .map(|c| format!("{} ({})", c.version_str, c.arch))
                .collect();
            let _ = write!(s, "\n  {dep}: ");
            if versions.is_empty() && !self.universe.providers.contains_key(name) {
                let _ = write!(s, "no repository in the spec offers it");
            } else if versions.is_empty() {
                let _ = write!(s, "only virtual; no provider matches");
            } else {
                let _ = write!(s, "available versions {} do not match", versions.join(", "));
            }
            if let Some(v) = self.baseline.version_of(name) {
                let _ = write!(s, "; the target has {v}");
            }
        }
        let _ = write!(
            s,
            "\nhelp: add the repository that provides it (for example the distribution's own), or pass --inventory HOST.json from `ferry-install inventory` so packages the target already has are not fetched (baseline now: {})",
            self.baseline.source
        );
        s
    }
}

/// `foo:any` → (`foo`, Some("any")).
fn split_qualifier(name: &str) -> (&str, Option<&str>) {
    match name.split_once(':') {
        Some((n, q)) => (n, Some(q)),
        None => (name, None),
    }
}

fn version_ok(dep: &SingleDependency, v: &PackageVersion) -> bool {
    dep.version_constraint
        .as_ref()
        .is_none_or(|c| satisfies(v, c.relationship, &c.version))
}

/// A versioned dependency is satisfied by a provider only through a versioned Provides.
fn provided_ok(dep: &SingleDependency, provided: Option<&PackageVersion>) -> bool {
    match (&dep.version_constraint, provided) {
        (None, _) => true,
        (Some(c), Some(v)) => satisfies(v, c.relationship, &c.version),
        (Some(_), None) => false,
    }
}

/// Whether a package of `arch` (with `multi_arch`) may satisfy a dependency, qualified
/// by `qual`, of a package of `from_arch`.
fn arch_ok(
    qual: Option<&str>,
    from_arch: &str,
    arch: &str,
    multi_arch: Option<&str>,
    native: &str,
) -> bool {
    let from = if from_arch == "all" {
        native
    } else {
        from_arch
    };
    match qual {
        Some("any") => {
            arch == "all" || arch == from || matches!(multi_arch, Some("allowed") | Some("foreign"))
        }
        Some("native") => arch == "all" || arch == native,
        Some(other) => arch == other,
        None => arch == "all" || arch == from || multi_arch == Some("foreign"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::parse_packages;

    const INDEX: &str = "\
Package: app
Version: 2.0
Architecture: amd64
Pre-Depends: libpre
Depends: libfoo (>= 1.2) | libalt, mail-transport-agent, tool:any, base-files
Filename: pool/a/app_2.0_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000001

Package: app
Version: 1.0
Architecture: amd64
Filename: pool/a/app_1.0_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000002

Package: libpre
Version: 1:0.1~rc1
Architecture: amd64
Multi-Arch: same
Filename: pool/l/libpre_0.1~rc1_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000003

Package: libfoo
Version: 1.1
Architecture: amd64
Filename: pool/l/libfoo_1.1_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000004

Package: libalt
Version: 3
Architecture: all
Depends: libc6 (>= 2.30)
Filename: pool/l/libalt_3_all.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000005

Package: postfix
Version: 3.7
Architecture: amd64
Provides: mail-transport-agent
Filename: pool/p/postfix_3.7_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000006

Package: exim4
Version: 4.96
Architecture: amd64
Provides: mail-transport-agent
Filename: pool/e/exim4_4.96_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000007

Package: tool
Version: 1
Architecture: amd64
Multi-Arch: allowed
Filename: pool/t/tool_1_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000008

Package: base-files
Version: 12
Architecture: amd64
Essential: yes
Depends: libc6
Filename: pool/b/base-files_12_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000009

Package: libc6
Version: 2.36
Architecture: amd64
Priority: optional
Filename: pool/l/libc6_2.36_amd64.deb
Size: 10
SHA256: 000000000000000000000000000000000000000000000000000000000000000a

Package: other-arch
Version: 1
Architecture: arm64
Filename: pool/o/other_1_arm64.deb
Size: 10
SHA256: 000000000000000000000000000000000000000000000000000000000000000b
";

    fn universe() -> Universe {
        let mut c = vec![];
        parse_packages(INDEX, 0, "amd64", &mut c).unwrap();
        Universe::new(c, "amd64")
    }

    fn names(r: &Resolver<'_>) -> Vec<String> {
        r.chosen
            .values()
            .map(|c| {
                let cand = &r.universe.candidates[c.candidate];
                format!("{}={}", cand.name, cand.version_str)
            })
            .collect()
    }

    #[test]
    fn closure_with_alternatives_virtuals_and_the_essential_baseline() {
        let u = universe();
        assert!(
            u.versions("other-arch", None).is_empty(),
            "foreign arch filtered out"
        );
        let base = Baseline::essential(&u);
        // libc6 is Priority: optional but needed by the essential base-files.
        assert!(base.packages.contains_key("libc6"));
        let mut r = Resolver::new(&u, base);
        let app = u.newest("app", &VersionReq::Any, None).unwrap();
        r.add_root(app, Role::Target, "named in the spec", true)
            .unwrap();
        // libfoo 1.1 is too old for >= 1.2, so the alternative libalt is taken; its libc6
        // dependency is in the baseline; the MTA resolves to the first provider by name.
        assert_eq!(
            names(&r),
            [
                "app=2.0",
                "exim4=4.96",
                "libalt=3",
                "libpre=1:0.1~rc1",
                "tool=1"
            ]
        );
        let alt = &r.chosen["libalt"];
        assert_eq!(alt.role, Role::Dependency);
        assert!(
            alt.reason.starts_with("app 2.0 -> libalt 3"),
            "{}",
            alt.reason
        );
    }

    #[test]
    fn inventory_baseline_skips_what_is_installed_at_a_satisfying_version() {
        let u = universe();
        let mut base = Baseline::new("inventory");
        let v = |s: &str| PackageVersion::parse(s).unwrap();
        base.add("libfoo", v("1.5"), "amd64", None, &[]);
        base.add("libpre", v("1:0.1~rc1"), "amd64", Some("same"), &[]);
        base.add(
            "postfix",
            v("3.6"),
            "amd64",
            None,
            &[("mail-transport-agent".into(), None)],
        );
        base.add("tool", v("1"), "i386", Some("allowed"), &[]);
        base.add("base-files", v("12"), "amd64", None, &[]);
        let mut r = Resolver::new(&u, base);
        let app = u.newest("app", &VersionReq::Any, None).unwrap();
        r.add_root(app, Role::Target, "named", true).unwrap();
        // tool:any is satisfied by the installed i386 tool (Multi-Arch: allowed).
        assert_eq!(names(&r), ["app=2.0"]);
    }

    #[test]
    fn unsatisfiable_dependencies_name_the_chain() {
        let mut c = vec![];
        let index = "Package: top\nVersion: 1\nArchitecture: amd64\nDepends: mid\nFilename: t.deb\nSize: 1\nSHA256: 0000000000000000000000000000000000000000000000000000000000000001\n\nPackage: mid\nVersion: 2\nArchitecture: all\nDepends: gone (>= 3) | alsogone\nFilename: m.deb\nSize: 1\nSHA256: 0000000000000000000000000000000000000000000000000000000000000002\n\nPackage: gone\nVersion: 2\nArchitecture: amd64\nFilename: g.deb\nSize: 1\nSHA256: 0000000000000000000000000000000000000000000000000000000000000003\n";
        parse_packages(index, 0, "amd64", &mut c).unwrap();
        let u = Universe::new(c, "amd64");
        let mut base = Baseline::new("an inventory");
        base.add(
            "gone",
            PackageVersion::parse("1").unwrap(),
            "amd64",
            None,
            &[],
        );
        let mut r = Resolver::new(&u, base);
        let top = u.newest("top", &VersionReq::Any, None).unwrap();
        let err = r.add_root(top, Role::Target, "named", true).unwrap_err().0;
        assert!(
            err.contains("top 1 -> mid 2 (mid) needs gone (>= 3) | alsogone"),
            "{err}"
        );
        assert!(
            err.contains(
                "gone (>= 3): available versions 2 (amd64) do not match; the target has 1"
            ),
            "{err}"
        );
        assert!(
            err.contains("alsogone: no repository in the spec offers it"),
            "{err}"
        );
        assert!(err.contains("help:"), "{err}");
        // An old version pinned exactly has no dependencies at all.
        let u = universe();
        let old = u
            .newest("app", &VersionReq::parse(Some("1.0")).unwrap(), None)
            .unwrap();
        let mut r = Resolver::new(&u, Baseline::new("nothing"));
        r.add_root(old, Role::Target, "named", true).unwrap();
        assert_eq!(names(&r), ["app=1.0"]);
    }

    #[test]
    fn arch_rules() {
        assert!(arch_ok(None, "amd64", "all", None, "amd64"));
        assert!(!arch_ok(None, "amd64", "i386", None, "amd64"));
        assert!(arch_ok(None, "amd64", "i386", Some("foreign"), "amd64"));
        assert!(arch_ok(
            Some("any"),
            "amd64",
            "i386",
            Some("allowed"),
            "amd64"
        ));
        assert!(!arch_ok(Some("any"), "amd64", "i386", None, "amd64"));
        assert!(arch_ok(Some("native"), "all", "amd64", None, "amd64"));
        assert!(arch_ok(None, "all", "amd64", None, "amd64"));
    }
}
