//! \[P\] What each geo name of a run answers at each POP: the `[[geo]]` tables of the
//! generated configs, and which POP an answer names.
//!
//! `www` answers with each POP's own addresses; a service with `targets = "addresses"` has
//! an address of its own at each POP (the POP's address plus 10 per service index, inside
//! the POP's prefix); one with `targets = "cname"` answers `POP.NAME.example.com.`.

use std::net::IpAddr;

use toml::{Table, Value};

use super::client::Reply;
use crate::folder::{self, Sim};
use crate::scenario::{Service, Targets};

/// The zone the CNAME targets are in (outside the node's zone, as a CDN's names are).
const CNAME_ZONE: &str = "example.com.";

/// Each service's answer at each POP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerMap {
    /// The services' names, by index.
    pub names: Vec<String>,
    /// What each answers, by service index then POP index.
    pub targets: Vec<PopTargets>,
}

/// What one service answers at each POP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PopTargets {
    /// Addresses, by POP.
    Addresses(Vec<Vec<IpAddr>>),
    /// A CNAME target (lower case, absolute), by POP.
    Cname(Vec<String>),
}

impl AnswerMap {
    /// The answers of `services` on `sim`'s POPs.
    pub fn new(sim: &Sim, services: &[Service]) -> Self {
        let targets = services
            .iter()
            .enumerate()
            .map(|(s, svc)| match svc.targets {
                Targets::PopAddresses => {
                    PopTargets::Addresses(sim.pops.iter().map(|p| p.addresses.clone()).collect())
                }
                Targets::Addresses => PopTargets::Addresses(
                    sim.pops
                        .iter()
                        .map(|p| p.addresses.iter().map(|&a| offset(a, 10 * s)).collect())
                        .collect(),
                ),
                Targets::Cname => PopTargets::Cname(
                    sim.pops
                        .iter()
                        .map(|p| format!("{}.{}.{CNAME_ZONE}", p.name, svc.name).to_lowercase())
                        .collect(),
                ),
            })
            .collect();
        Self {
            names: services.iter().map(|s| s.name.clone()).collect(),
            targets,
        }
    }

    /// The absolute name service `s` is asked as.
    pub fn qname(&self, s: usize) -> String {
        format!("{}.{}", self.names[s], folder::ZONE)
    }

    /// The POP an answer for service `s` names: the POP whose address is the answer's
    /// first address, or whose CNAME target it is.
    pub fn pop_of(&self, s: usize, reply: &Reply) -> Option<usize> {
        let Reply::Answer {
            addresses, cname, ..
        } = reply
        else {
            return None;
        };
        match &self.targets[s] {
            PopTargets::Addresses(by_pop) => {
                let first = addresses.first()?;
                by_pop.iter().position(|a| a.contains(first))
            }
            PopTargets::Cname(by_pop) => {
                let c = cname.as_ref()?.to_lowercase();
                by_pop.iter().position(|t| *t == c)
            }
        }
    }

    /// The `[[geo]]` array of the node configs: every service, TTL and one answer as the
    /// generated `www`, with `[[geo.target]]` tables where it has targets of its own.
    pub fn geo_config(&self, sim: &Sim) -> Value {
        let geo = self
            .names
            .iter()
            .zip(&self.targets)
            .enumerate()
            .map(|(s, (name, targets))| {
                let mut t = Table::new();
                t.insert("name".into(), name.as_str().into());
                t.insert("ttl".into(), i64::from(folder::GEO_TTL).into());
                t.insert("answers".into(), 1.into());
                if s > 0 {
                    let per_pop = sim.pops.iter().enumerate().map(|(i, p)| {
                        let mut target = Table::new();
                        target.insert("pop".into(), p.name.as_str().into());
                        match targets {
                            PopTargets::Addresses(a) => target.insert(
                                "addresses".into(),
                                Value::Array(a[i].iter().map(|a| a.to_string().into()).collect()),
                            ),
                            PopTargets::Cname(c) => {
                                target.insert("cname".into(), c[i].as_str().into())
                            }
                        };
                        Value::Table(target)
                    });
                    t.insert("target".into(), Value::Array(per_pop.collect()));
                }
                Value::Table(t)
            })
            .collect();
        Value::Array(geo)
    }
}

/// `a` plus `k`.
fn offset(a: IpAddr, k: usize) -> IpAddr {
    match a {
        IpAddr::V4(v) => IpAddr::V4(u32::from(v).wrapping_add(k as u32).into()),
        IpAddr::V6(v) => IpAddr::V6(u128::from(v).wrapping_add(k as u128).into()),
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::ResponseCode;

    use super::*;
    use crate::pops::PopRequest;
    use crate::scenario::WWW;

    fn services() -> Vec<Service> {
        vec![
            Service {
                name: WWW.into(),
                targets: Targets::PopAddresses,
            },
            Service {
                name: "api".into(),
                targets: Targets::Addresses,
            },
            Service {
                name: "cdn".into(),
                targets: Targets::Cname,
            },
        ]
    }

    fn reply(addresses: Vec<IpAddr>, cname: Option<&str>) -> Reply {
        Reply::Answer {
            rcode: ResponseCode::NoError,
            addresses,
            cname: cname.map(str::to_owned),
            ttl: 30,
        }
    }

    #[test]
    fn each_service_names_each_pop_by_its_own_targets() {
        let requests: Vec<PopRequest> = ["fra", "nyc", "syd"]
            .iter()
            .map(|n| PopRequest::parse(n).unwrap())
            .collect();
        let sim = Sim::generate(200, 1, &requests).unwrap();
        let m = AnswerMap::new(&sim, &services());
        assert_eq!(m.qname(1), "api.example.net.");
        let www1 = sim.pops[1].addresses[0];
        assert_eq!(m.pop_of(0, &reply(vec![www1], None)), Some(1));
        // api's own addresses are not www's: www's address names no POP for api.
        assert_eq!(m.pop_of(1, &reply(vec![www1], None)), None);
        let PopTargets::Addresses(api) = &m.targets[1] else {
            panic!("api has addresses")
        };
        assert_eq!(m.pop_of(1, &reply(vec![api[2][0]], None)), Some(2));
        assert_eq!(
            m.pop_of(2, &reply(vec![], Some("NYC.cdn.example.com."))),
            Some(1)
        );
        assert_eq!(m.pop_of(2, &reply(vec![], None)), None);
        assert_eq!(m.pop_of(0, &Reply::Timeout), None);
        // The config: www without targets, api and cdn with one per POP.
        let Value::Array(geo) = m.geo_config(&sim) else {
            panic!("an array")
        };
        assert_eq!(geo.len(), 3);
        assert!(geo[0].get("target").is_none());
        assert_eq!(
            geo[2]["target"][0]["cname"].as_str(),
            Some("fra.cdn.example.com.")
        );
        assert_eq!(
            geo[1]["target"][1]["addresses"][0].as_str(),
            Some(api[1][0].to_string().as_str())
        );
    }
}
