//! The `context` import (WIT 0.2.0, and its 0.3.0 and 0.4.0 names): what a hook call may
//! ask the gateway about the call in progress, beyond the records it was given.

use super::bindings::portcullis::policy::context::{self as wit, Delegator};
use crate::identity::Identity;

/// The answers of the `context` import for one hook call. Set on the instance's store
/// before each call, so an instance never sees the context of an earlier one.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The person the connected identity acts for, with their groups.
    pub acting_for: Option<Delegator>,
}

impl CallContext {
    /// The context of a call made for `identity`.
    pub fn of(identity: &Identity) -> Self {
        Self::acting_for(identity.acting_for.as_deref(), &identity.acting_for_groups)
    }

    /// A context naming the person `user` (if any) with `groups`.
    pub fn acting_for(user: Option<&str>, groups: &[String]) -> Self {
        CallContext {
            acting_for: user.map(|u| Delegator {
                user: u.to_owned(),
                groups: groups.to_vec(),
            }),
        }
    }
}

impl wit::Host for super::engine::HostState {
    fn acting_for(&mut self) -> Option<Delegator> {
        self.context.acting_for.clone()
    }
}

/// The same answers for components built against contract 0.2.0, which import the
/// interface under that version.
impl super::bindings_v0_2::portcullis::policy::context::Host for super::engine::HostState {
    fn acting_for(
        &mut self,
    ) -> Option<super::bindings_v0_2::portcullis::policy::context::Delegator> {
        self.context.acting_for.as_ref().map(|d| {
            super::bindings_v0_2::portcullis::policy::context::Delegator {
                user: d.user.clone(),
                groups: d.groups.clone(),
            }
        })
    }
}

/// The same answers for components built against contract 0.3.0, which import the
/// interface under that version.
impl super::bindings_v0_3::portcullis::policy::context::Host for super::engine::HostState {
    fn acting_for(
        &mut self,
    ) -> Option<super::bindings_v0_3::portcullis::policy::context::Delegator> {
        self.context.acting_for.as_ref().map(|d| {
            super::bindings_v0_3::portcullis::policy::context::Delegator {
                user: d.user.clone(),
                groups: d.groups.clone(),
            }
        })
    }
}
